"""robot-stack evaluate: a checkpoint and its ONNX package under depth noise and dropout (table, CSV, PNG with one
line per policy); the levels reach the camera; bad input is one line naming it.

The policy is a 16 px push policy trained here for a few steps (a horizon of 4), so the figures are not the point:
the evaluation path is.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from robot_stack import cli, config
from robot_stack.jobs import robustness
from robot_stack.jobs.train import TrainConfig, train

TINY = ["env.heightmap_size=16", "env.horizon=4", "network.family=cnn", "network.widths=[2]",
        "network.kernel_sizes=[3]", "network.hidden=2", "sac.bc_pretrain_updates=2", "sac.batch_size=4",
        "expert_episodes=1", "expert_successes_only=false", "learning_starts=4", "total_steps=4", "eval_every=4",
        "eval_episodes=1", "checkpoint_every=4", "progress=false", "tensorboard=false"]


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    out = tmp_path_factory.mktemp("push_tiny")
    result = train(config.load(TrainConfig, "train_push", [*TINY, f"out_dir={out}"]))
    return out / "checkpoint.pt", result.onnx_path


def test_checkpoint_and_package_under_noise_and_dropout(policies, tmp_path, capsys):
    checkpoint, package = policies
    stem = tmp_path / "robust"
    argv = ["evaluate", str(checkpoint), str(package), "--task", "push", "env.view=gripper", "env.heightmap_size=16",
            "env.horizon=4",
            "--noise", "0,0.01", "--dropout", "0,0.5", "--episodes", "2", "--out", str(stem)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    with open(f"{stem}.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(float(r["noise_std_m"]), float(r["dropout"])) for r in rows] == [(0, 0), (0.01, 0), (0, 0.5)] * 2
    assert len({r["policy"] for r in rows}) == 2 and "checkpoint.pt" in rows[0]["policy"]
    assert all(float(r["wilson_low"]) <= float(r["success_rate"]) <= float(r["wilson_high"]) for r in rows)
    # the same actor through torch and onnxruntime on the same layouts
    assert [r["mean_return"] for r in rows[:3]] == [r["mean_return"] for r in rows[3:]]
    assert (tmp_path / "robust.png").stat().st_size > 20_000 and "95% Wilson" in out


def test_rotated_goals_roll_each_episode_to_the_horizon(policies, tmp_path, capsys):
    stem = tmp_path / "goals"
    argv = ["evaluate", str(policies[0]), "--rotated-goals", "env.variant=world_goal", "env.variant_strength=1",
            "--episodes", "2", "--out", str(stem)]
    assert cli.main(argv) == 0
    with open(f"{stem}.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["episodes"] == "2" and float(row["strength"]) == 1.0
    assert 0.0 <= float(row["share_two_or_more"]) <= 1.0 and 0.0 <= float(row["mean_goals_passed"]) <= 4.0
    assert "goals passed (of 4)" in capsys.readouterr().out


def test_the_levels_reach_the_depth_camera(policies):
    subject, = robustness.load_subjects([str(policies[0])], None, [], None)
    seen: list[np.ndarray] = []
    subject.act = lambda obs: seen.append(obs["heightmap"].copy()) or np.zeros(5, np.float32)
    levels = [robustness.Level(0, 0), robustness.Level(0.01, 0), robustness.Level(0, 0.5)]
    robustness.run([subject], levels, episodes=1)
    clean, noisy, holes = seen[0::4], seen[1::4], seen[2::4]  # first step of each level's episode
    assert len(seen) == 12 and not np.array_equal(noisy[0], clean[0]) and not np.array_equal(holes[0], clean[0])


def test_wilson_interval():
    assert robustness.wilson(35, 50) == pytest.approx((0.5625, 0.8090), abs=1e-3)
    assert robustness.wilson(0, 50)[0] == 0 and robustness.wilson(50, 50)[1] == pytest.approx(1)


BAD = [("--noise 0,-0.01", "--noise: level -0.01 is not >= 0"),
       ("--dropout 0,1", "--dropout: level 1 is not in [0, 1)"),
       ("--noise 0,abc", "--noise: 'abc' is not a number"),
       ("--episodes 0", "--episodes: 0 is not in 1..1000"),
       ("--task reach", "a policy trained on 'push', not 'reach'"),
       ("env.heightmap_size=32", "does not match the 'push' env"),
       ("env.depth_dropout=0.2", "the camera noise is set by --noise and --dropout"),
       ("MISSING.pt", "no policy at MISSING.pt"),
       ("--rotated-goals", "rotated goals need push with world_goal at a strength above 0"),
       ("NOT_A_CHECKPOINT", "not a readable checkpoint")]


@pytest.mark.parametrize("extra, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_it(policies, tmp_path, capsys, extra, message):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    argv = ["evaluate", str(policies[0]), *extra.replace("NOT_A_CHECKPOINT", str(junk)).split(), "--episodes", "1"]
    argv = argv if "--episodes" not in extra else argv[:-2]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("robot-stack evaluate: error: "), err
    assert message in err, err


def test_a_package_needs_its_task_and_a_toy_task_has_no_camera(policies, capsys):
    assert cli.main(["evaluate", str(policies[1])]) == 2
    assert "pass --task" in capsys.readouterr().err
    assert cli.main(["evaluate", str(policies[1]), "--task", "toy_reach"]) == 2
    assert "has no depth camera" in capsys.readouterr().err
