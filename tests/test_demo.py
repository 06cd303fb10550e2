"""The main job end to end: `robot-stack demo --quick`, and Ctrl-C in the middle of it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_stack.recorder import EpisodeDataset
from robot_stack.recorder.validate import validate

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "2",
       "PYTHONUNBUFFERED": "1"}


def _demo(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robot_stack", "demo", "--quick", f"out={out}", *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eww" not in line]


@pytest.mark.slow
def test_demo_quick_reports_measured_figures(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    log, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, log[-3000:]
    report = json.loads((out / "report.json").read_text())
    for key in ("random", "before", "after"):
        assert 0.0 <= report[key]["success_rate"] <= 1.0
    assert report["robot"]["episodes"] == 3
    assert report["robot"]["recorded_episodes"] == 3
    assert report["robot"]["validate_problems"] == []
    assert report["robot"]["latency_ms"]["p50"] > 0
    # the policy trained by the demo beats a random one on the same evaluation seeds
    assert report["before"]["success_rate"] > report["random"]["success_rate"], report
    for name in ("learning_curve.png", "latency_histogram.png", "episode_strip.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert str(out / "report.md") in log
    assert validate(str(out / "expert.zarr")) == []
    assert validate(str(out / "robot.zarr")) == []


@pytest.mark.slow
def test_ctrl_c_leaves_no_stray_process_and_no_corrupted_dataset(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
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
    servers = _processes_mentioning(str(out / "train_bc" / "policy.onnx"))
    assert servers, "the demo's policy server should be running"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    time.sleep(1.0)
    assert _processes_mentioning(str(out / "train_bc" / "policy.onnx")) == []
    for store in ("expert.zarr", "robot.zarr"):
        assert validate(str(out / store)) == [], store
        EpisodeDataset(str(out / store))  # opens and reads
