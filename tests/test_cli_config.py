"""Every job's config is checked when it loads: a bad value in any section is one line naming the key, exit code 2, no
traceback, and nothing runs. Every command takes options and key=value overrides in any order, and the examples in
its help parse as written."""

from __future__ import annotations

import importlib
import shlex

import pytest

from robot_stack import cli

# (command line, what the one line of error must say): a bad value in each section of each job's config
BAD_VALUES = [
    ("train train_push task=nope", "task: 'nope' is not one of ['lift'"),
    ("train train_push env.variant=no_such_variant", "env.variant: 'no_such_variant' is not one of ['none'"),
    ("train train_toy env.variant=gravity_tilt", "env.variant: 'gravity_tilt' is not one of ['none', 'action_bias']"),
    ("train train_push env.variant_strength=1.5", "env.variant_strength: 1.5 is not in [0, 1]"),
    ("train train_push env.variant_strength=nan", "env.variant_strength: nan is not in [0, 1]"),
    ("train train_lift env.variant=world_goal", "env.variant: 'world_goal' offsets a visible goal pad; tasks with one: "
                                               "['push', 'reach'], not 'lift'"),
    ("train train_push env.camera=pinhole", "env.camera: 'pinhole' is not one of ['raycast', 'gl']"),
    ("train train_push env.heightmap_sise=32", "env: unknown key(s) ['heightmap_sise']"),
    ("train train_push network.family=resnet", "network: unknown network family 'resnet'; valid families: relaxed"),
    ("train train_push sac.lr=fast", "sac.lr: expected a number, got 'fast'"),
    ("train train_push total_steps=0", "total_steps and num_envs must be >= 1"),
    ("offline offline_toy task=nope", "task: 'nope' is not one of"),
    ("offline offline_toy env.reward=dense", "env.reward: 'dense' is not one of ['sparse', 'shaped']"),
    ("offline offline_toy network.widths=[2,0,8]", "network: widths must be a non-empty list of positive integers"),
    ("offline offline_toy algo=td3", "algo: 'td3' is not one of ['cql', 'iql', 'bc']"),
    ("offline offline_toy cql.alpha_lr=fast", "cql.alpha_lr: expected a number"),
    ("offline offline_toy iql.expectyle=0.9", "iql: unknown key(s) ['expectyle']"),
    ("offline offline_toy --dataset d.zarr bc.lr=[1]", "bc.lr: expected a number"),
    ("collect collect_push task=nope", "task: 'nope' is not one of"),
    ("collect collect_push sim.variant=tilted", "sim.variant: 'tilted' is not one of ['none'"),
    ("collect collect_push sim.variant=wall sim.variant_strength=-0.1", "sim.variant_strength: -0.1 is not in [0, 1]"),
    ("collect collect_push sim.seed=3", "sim.seed is set per episode"),
    ("collect collect_push noise=-1", "noise must be a number >= 0"),
    ("run sim_robot policy.threads=many", "policy.threads: expected an integer"),
    ("run sim_robot arm.kind=kuka", "arm.kind: 'kuka' is not one of ['sim', 'ur']"),
    ("run sim_robot arm.task=nope", "arm.task: 'nope' is not one of"),
    ("run sim_robot arm.sim.variant=tilted", "arm.sim.variant: 'tilted' is not one of"),
    ("run real_ur arm.ur.gain=50", "arm.ur: gain must be in [100, 2000]"),
    ("run real_ur arm.ur.hots=10.0.0.1", "arm.ur: unknown key(s) ['hots']"),
    ("run real_ur camera.realsense.fps=fast", "camera.realsense.fps: expected an integer"),
    ("run sim_robot camera.kind=kinect", "camera.kind: 'kinect' is not one of ['sim', 'realsense']"),
    ("run sim_robot robot.heightmap_size=big", "robot.heightmap_size: expected an integer"),
    ("run real_ur robot.view=side", "robot.view: 'side' is not one of ['workspace', 'gripper']"),
    ("run real_ur robot.view=gripper robot.extent=-1", "robot.extent: heightmap extent must be >= 0"),
    ("run real_ur robot.heightmap_size=2", "robot.heightmap_size: heightmap size must be an integer >= 4"),
    ("run real_ur robot.dpos=0", "robot.dpos: must be a positive number"),
    ("run real_ur record.keep_depth=sometimes", "record.keep_depth: expected true or false"),
    ("run sim_robot loop.rate_hz=0", "loop: rate_hz must be in [0.1, 500]"),
    ("run sim_robot safety.margin=wide", "safety.margin: expected a number"),
    ("run sim_robot record.enabled=maybe", "record.enabled: expected true or false"),
    ("demo task=nope", "task: 'nope' is not one of"),
    ("demo --quick train.network.family=resnet", "train.network: unknown network family 'resnet'"),
    ("demo train.nope=1", "train: unknown key(s) ['nope']"),
    ("demo env_steps=0 --quick", "env_steps: must be at least 1"),
    ("demo rate_hz=0", "rate_hz must be in [0.1, 500]"),
    ("sweep sweep_push overrides.env.variant=tilted", "env.variant: 'tilted' is not one of"),
    ("sweep sweep_push --address 10.0.0.5:6379 overrides.sac.lr=fast", "sac.lr: expected a number"),
    ("sweep sweep_push families=[relaxed,resnet]", "unknown network family 'resnet'"),
    ("sweep sweep_push variants=[tilted]", "env.variant: 'tilted' is not one of"),
    ("sweep sweep_push seeds=[]", "sweep seeds must not be empty"),
    ("sweep sweep_offline_toy overrides.iql.expectyle=0.9", "iql: unknown key(s) ['expectyle']"),
    ("calibrate calibrate camera.fps=fast", "camera.fps: expected an integer"),
    ("calibrate calibrate camera.decimation=99", "camera: "),
    ("calibrate calibrate workspace.x_mim=0.1", "workspace: unknown key(s) ['x_mim']"),
    ("calibrate calibrate frames=0", "frames: must be at least 1"),
]

# what each command runs once its config has loaded: a test of a bad config must never get there
JOBS = [("robot_stack.jobs.train", "train"), ("robot_stack.jobs.offline", "run_job"),
        ("robot_stack.jobs.collect", "collect"), ("robot_stack.jobs.run", "run_config"),
        ("robot_stack.jobs.demo", "Demo.run"), ("robot_stack.jobs.sweep", "run_sweep"),
        ("robot_stack.jobs.calibrate", "calibrate")]


@pytest.fixture
def jobs_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def ran(*args: object, **kwargs: object) -> None:
        raise AssertionError("the job ran although its config is bad")

    for module, name in JOBS:
        *owners, attribute = name.split(".")  # "Demo.run": the demo's config is checked when Demo is built
        target = importlib.import_module(module)
        for owner in owners:
            target = getattr(target, owner)
        monkeypatch.setattr(target, attribute, ran)


@pytest.mark.parametrize("line, message", BAD_VALUES, ids=[line for line, _ in BAD_VALUES])
def test_a_bad_value_in_any_section_is_one_line_naming_the_key_and_nothing_runs(
        line: str, message: str, jobs_must_not_run: None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = shlex.split(line)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"robot-stack {argv[0]}: error: ") and message in err, err


def test_every_job_and_config_section_has_a_bad_value_test() -> None:
    commands = {line.split()[0] for line, _ in BAD_VALUES}
    assert commands == {"train", "offline", "collect", "run", "demo", "sweep", "calibrate"}
    run_sections = {line.split()[2].split(".")[0] for line, _ in BAD_VALUES if line.startswith("run ")}
    assert run_sections == {"policy", "arm", "camera", "robot", "loop", "safety", "record"}


def help_examples(name: str) -> list[str]:
    """The lines after "Examples:" in a command's help that start with ``robot-stack``."""
    module = importlib.import_module(f"robot_stack.commands.{name}")
    text = getattr(module, "DESCRIPTION", "").partition("Examples:")[2]
    return [line.strip() for line in text.splitlines() if line.strip().startswith("robot-stack ")]


EXAMPLES = [(name, line) for name in cli.COMMANDS for line in help_examples(name)]


def test_every_command_shows_examples_and_every_command_module_loads() -> None:
    assert {name for name, _ in EXAMPLES} == set(cli.COMMANDS)
    assert set(cli.build_parser().commands) == set(cli.COMMANDS)


@pytest.mark.parametrize("name, line", EXAMPLES, ids=[line for _, line in EXAMPLES])
def test_every_help_example_parses_as_written(name: str, line: str) -> None:
    argv = shlex.split(line, comments=True)
    assert argv[:2] == ["robot-stack", name]
    args = cli.build_parser().parse_args(argv[1:])
    assert args.command == name


def test_options_and_overrides_come_in_any_order() -> None:
    parser = cli.build_parser()
    after = parser.parse_args(["sweep", "sweep_push", "--address", "HOST:PORT", "seeds=[0,1,2,3,4]", "name=s"])
    before = parser.parse_args(["sweep", "sweep_push", "seeds=[0,1,2,3,4]", "--address", "HOST:PORT", "name=s"])
    for args in (after, before):
        assert (args.config, args.address) == ("sweep_push", "HOST:PORT")
        assert args.overrides == ["seeds=[0,1,2,3,4]", "name=s"]
    demo = parser.parse_args(["demo", "out=runs/d", "--quick", "env_steps=10"])
    assert demo.quick and demo.overrides == ["out=runs/d", "env_steps=10"]


def test_offline_datasets_and_overrides_mix_in_any_order() -> None:
    from robot_stack.commands.offline import split_dataset_words

    args = cli.build_parser().parse_args(["offline", "offline_toy", "algo=cql", "--dataset", "a.zarr", "--dataset",
                                          "b.zarr", "steps=5", "cql.alpha=5"])
    datasets, overrides = split_dataset_words([w for group in args.dataset for w in group])
    assert (args.config, datasets) == ("offline_toy", ["a.zarr", "b.zarr"])
    assert list(args.overrides) + overrides == ["algo=cql", "steps=5", "cql.alpha=5"]
