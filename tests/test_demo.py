"""The main job end to end: `robot-stack demo --quick` at tiny sizes, and Ctrl-C in the middle of it.

The tiny run checks that every stage ran and wrote its figure; it asserts no success rate (a few dozen env steps
teach nothing)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from robot_stack import config
from robot_stack.config import ConfigError
from robot_stack.jobs.demo import DEMO_TASKS, QUICK, SIZES, Demo, DemoConfig, demo_config, finetune_config, train_config
from robot_stack.recorder import EpisodeDataset
from robot_stack.recorder.validate import validate

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "PYTHONUNBUFFERED": "1"}
TINY = {"env_steps": 64, "expert_episodes": 2, "bc_pretrain_updates": 10, "eval_every": 32, "eval_episodes": 2,
        "collect_episodes": 2, "robot_episodes": 2, "finetune_steps": 10, "train.learning_starts": 32}
STAGES = 5
FIGURES = ("learning_curve", "latency", "episode_strip", "relaxed_weights")


def _demo(out: Path, **sizes: int) -> subprocess.Popen:
    overrides = [f"{k}={v}" for k, v in {**TINY, **sizes}.items()]
    return subprocess.Popen([sys.executable, "-m", "robot_stack", "demo", "--quick", f"out={out}", *overrides],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eww" not in line]


def _check_png(path: Path) -> None:
    assert path.suffix == ".png" and path.stat().st_size > 10_000, path
    image = iio.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= 200, (path, image.shape)
    assert float(np.std(image[..., :3])) > 5.0, f"{path} is (nearly) blank"


def test_demo_config_takes_the_default_sizes_then_quick_then_overrides(tmp_path):
    lift = demo_config("lift", False, ["env_steps=1000", "train.sac.lr=3e-4"])
    assert lift.env_steps == 1000 and lift.eval_episodes == DemoConfig.eval_episodes
    train = train_config(lift, tmp_path / "train")
    assert train.task == "lift" and train.total_steps == 1000 and train.sac.lr == 3e-4
    assert train.env["view"] == "gripper" and train.network["family"] == "relaxed"  # launch/train_lift.yaml
    assert train.sac.bc_pretrain_updates == DemoConfig.bc_pretrain_updates
    assert not train.resume and train.checkpoint_every > train.total_steps and train.out_dir == str(tmp_path / "train")
    assert demo_config("push", True, ["robot_episodes=7"]).env_steps == QUICK["env_steps"]
    for task, overrides in (("door", []), ("push", ["robot_episodes=0"]), ("push", ["train.no_such_key=1"])):
        with pytest.raises(ConfigError):
            train_config(demo_config(task, False, overrides), tmp_path)


@pytest.mark.parametrize("task", DEMO_TASKS)
@pytest.mark.parametrize("quick", [False, True], ids=["default", "quick"])
def test_the_default_and_quick_sizes_build_for_every_task(task, quick, tmp_path):
    demo = Demo(demo_config(task, quick, [f"out={tmp_path}"]))
    cfg, train, job = demo.cfg, demo.train_cfg, demo.finetune_cfg
    sizes = QUICK if quick else {key: getattr(DemoConfig, key) for key in SIZES}
    assert {key: getattr(cfg, key) for key in SIZES} == sizes
    assert (train.task, train.total_steps, train.expert_episodes, train.eval_every, train.eval_episodes) == \
        (task, cfg.env_steps, cfg.expert_episodes, cfg.eval_every, cfg.eval_episodes)
    assert train.sac.bc_pretrain_updates == cfg.bc_pretrain_updates and job.task == task
    assert job.steps == cfg.finetune_steps and job.init == str(tmp_path / "train" / "checkpoint.pt")


def test_finetune_is_the_offline_launch_file_at_the_demo_size(tmp_path):
    cfg = demo_config("push", False, ["finetune_steps=123", "seed=4", "train.network.group=C8"])
    train = train_config(cfg, tmp_path / "train")
    job = finetune_config(cfg, train, tmp_path)
    recipe = config.read_yaml(config.LAUNCH_DIR / "offline_push.yaml")
    assert (job.algo, job.iql, job.batch_size) == (recipe["algo"], recipe["iql"], recipe["batch_size"])
    assert job.steps == 123 and job.seed == 4 and job.init == str(tmp_path / "train" / "checkpoint.pt")
    assert job.datasets == [str(tmp_path / "robot.zarr"), str(tmp_path / "expert.zarr")]
    assert job.network["group"] == "C8" and job.env == train.env  # what the checkpoint it starts from holds


@pytest.mark.slow
def test_demo_quick_runs_every_stage_and_writes_its_figures(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    log, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["timings_s"]) == STAGES, report["timings_s"]
    # learning: demos, BC pre-training, online SAC with periodic evaluation, an exported package
    train = report["train"]
    assert train["env_steps"] == TINY["env_steps"] and train["pretrain_updates"] == TINY["bc_pretrain_updates"]
    assert [e["step"] for e in train["evals"]] == [32, 64]
    assert train["expert_steps"] > 0 and train["updates"] > 0
    assert report["package"]["family"] == "relaxed" and (out / "train" / "policy.onnx").stat().st_size > 0
    # every success figure is measured (a rate), none asserted
    for key in ("random", "expert", "before", "after"):
        assert 0.0 <= report[key]["success_rate"] <= 1.0, key
    robot = report["robot"]
    assert robot["episodes"] == robot["recorded_episodes"] == TINY["robot_episodes"]
    assert robot["validate_problems"] == [] and robot["latency_ms"]["p50"] > 0
    assert report["finetune"]["transitions"] > 0
    # before and after fine-tuning: one routine on the same layouts; the checkpoint scores what training's last eval did
    assert report["before"]["episodes"] == report["after"]["episodes"] == TINY["eval_episodes"]
    demo = Demo(demo_config("push", True, [f"out={out}", *(f"{k}={v}" for k, v in TINY.items())]))
    again, last = demo.evaluate_checkpoint(str(out / "train" / "checkpoint.pt")), train["evals"][-1]
    assert (again["success_rate"], again["mean_return"]) == (last["success_rate"], last["return"])
    assert report["strip"]["drift_m"] < 1e-3, "the strip's replay must follow the recorded episode"
    markdown = (out / "report.md").read_text()
    for name in FIGURES:
        _check_png(Path(report["pngs"][name]))
        assert f"({Path(report['pngs'][name]).name})" in markdown, name
    assert str(out / "report.md") in log
    assert validate(str(out / "expert.zarr")) == []
    assert validate(str(out / "robot.zarr")) == []


@pytest.mark.slow
def test_ctrl_c_leaves_no_stray_process_and_no_corrupted_dataset(tmp_path):
    out = tmp_path / "demo"
    package = str(out / "train" / "policy.onnx")
    proc = _demo(out, robot_episodes=6)
    deadline = time.monotonic() + 900
    seen = []
    while time.monotonic() < deadline:  # wait until the server runs and the robot is recording
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "episode ended" in line:
            break
    assert any("episode ended" in s for s in seen), "".join(seen)[-3000:]
    assert _processes_mentioning(package), "the demo's policy server should be running"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    time.sleep(1.0)
    assert _processes_mentioning(package) == []
    for store in ("expert.zarr", "robot.zarr"):
        assert validate(str(out / store)) == [], store
        EpisodeDataset(str(out / store))  # opens and reads
