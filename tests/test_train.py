"""The training job: kill-and-resume, Ctrl-C, and clear errors for bad configs and checkpoints."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from policies.replay_buffer import Transition
from robot_stack import cli, config
from robot_stack.jobs.train import (
    PHASES,
    CheckpointError,
    ProgressBars,
    TrainConfig,
    Trainer,
    TrainProgress,
    read_checkpoint,
    read_evals_csv,
    train,
)
from robot_stack.provenance import source_commit

TINY = ["env.heightmap_size=16", "network.family=cnn", "network.widths=[2]", "network.kernel_sizes=[3]",
        "network.hidden=2", "tensorboard=false", "progress=false", "export_onnx=false", "expert_episodes=2",
        "sac.batch_size=8", "learning_starts=8", "eval_episodes=2"]
REPO = Path(__file__).resolve().parent.parent
RESUME_EVERY = ["eval_every=20", "checkpoint_every=100"]  # evals between checkpoints, lost to a kill


def _start_job(out_dir: Path, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robot_stack", "train", "train_toy", *TINY, f"out_dir={out_dir}",
           "total_steps=1000000", "eval_every=1000000", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    _wait_until(path.exists, proc, f"no {path.name} appeared", timeout)


def _wait_until(done: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            raise AssertionError(f"job exited early: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(what)
        time.sleep(0.2)


def _csv_ahead_of_checkpoint(out_dir: Path) -> bool:
    """evals.csv holds an eval the checkpoint does not: a kill now leaves the case resume has to clean up."""
    rows = read_evals_csv(out_dir / "evals.csv")
    return bool(rows) and rows[-1]["step"] > read_checkpoint(out_dir / "checkpoint.pt")["step"]


def _trainer(out_dir: Path, extra: list[str]) -> Trainer:
    return Trainer(config.load(TrainConfig, "train_toy", [*TINY, f"out_dir={out_dir}", *extra]))


def test_kill_and_resume_continues_from_checkpoint(tmp_path):
    proc = _start_job(tmp_path, RESUME_EVERY)
    _wait_for(tmp_path / "checkpoint.pt", proc)
    _wait_until(lambda: _csv_ahead_of_checkpoint(tmp_path), proc, "no eval after a checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] >= 100 and saved["step"] % 100 == 0
    assert [e["step"] for e in read_evals_csv(tmp_path / "evals.csv")][:len(saved["evals"])] == \
        [e["step"] for e in saved["evals"]]
    trainer = _trainer(tmp_path, ["total_steps=1000"])
    trainer.load_checkpoint()
    assert trainer.step == saved["step"]
    assert len(trainer.buffer) == saved["buffer_size"] > 0
    assert trainer.agent.updates == saved["agent"]["updates"] > 0
    for name, value in trainer.agent.actor.state_dict().items():
        torch.testing.assert_close(value, saved["agent"]["actor"][name])
    # run() resumes (no new expert episodes) and goes on to the new total.
    trainer = _trainer(tmp_path, [f"total_steps={saved['step'] + 40}", *RESUME_EVERY])
    result = trainer.run()
    assert result.step == saved["step"] + 40
    assert trainer.expert_steps == saved["expert_steps"]
    assert len(trainer.buffer) > saved["buffer_size"]
    # evals.csv is the resumed eval history: the killed session's evals past its checkpoint are gone, none twice.
    steps = [e["step"] for e in read_evals_csv(tmp_path / "evals.csv")]
    assert steps == list(range(20, result.step + 1, 20))
    assert read_evals_csv(tmp_path / "evals.csv") == read_checkpoint(tmp_path / "checkpoint.pt")["evals"]
    # one provenance line per session: the killed one from step 0, the resumed one from the checkpoint's step
    sessions = [json.loads(line) for line in (tmp_path / "provenance.jsonl").read_text().splitlines()]
    assert [s["step"] for s in sessions] == [0, saved["step"]]
    assert all(s["job"] == "train" and s["commit"] == source_commit() for s in sessions)


def test_a_run_writes_its_evals_as_csv_and_a_learning_curve(tmp_path, capsys):
    cfg = config.load(TrainConfig, "train_toy", [*TINY, f"out_dir={tmp_path}", "total_steps=40", "eval_every=20",
                                                  "progress=false"])  # the last line comes without the bar too
    result = train(cfg)
    rows = read_evals_csv(tmp_path / "evals.csv")
    assert rows == read_checkpoint(tmp_path / "checkpoint.pt")["evals"] == result.evals
    assert [r["step"] for r in rows] == [20, 40]
    assert 0 <= rows[0]["seconds"] <= rows[1]["seconds"]
    updated = [r for r in rows if "q" in r]  # the update statistics of the evals after the first updates
    assert updated and all(np.isfinite(r["q"]) and r["alpha"] > 0 for r in updated)
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "evals.csv" in last and "learning_curve.png" in last and str(tmp_path) in last


def test_eval_at_start_scores_the_pretrained_policy_once_at_step_zero(tmp_path):
    cfg = config.load(TrainConfig, "train_toy", [*TINY, f"out_dir={tmp_path}", "total_steps=20", "eval_every=20",
                                                  "eval_at_start=true", "progress=false"])
    assert [r["step"] for r in train(cfg).evals] == [0, 20]
    resumed = config.load(TrainConfig, "train_toy", [*TINY, f"out_dir={tmp_path}", "total_steps=40",
                                                      "eval_every=20", "eval_at_start=true", "progress=false"])
    assert [r["step"] for r in train(resumed).evals] == [0, 20, 40]  # a resumed run does not score step 0 again


def test_progress_observers_see_the_phases_in_order_and_the_steps_grow(tmp_path):
    seen: list[TrainProgress] = []
    trainer = Trainer(config.load(TrainConfig, "train_toy", [*TINY, f"out_dir={tmp_path}", "total_steps=40",
                                                             "eval_every=20", "sac.bc_pretrain_updates=30"]),
                      progress=seen.append)
    result = trainer.run()
    phases = [p.phase for p in seen]
    assert [phase for i, phase in enumerate(phases) if phase not in phases[:i]] == list(PHASES)
    assert phases == sorted(phases, key=PHASES.index)
    for key in ("step", "expert_steps", "bc_updates", "episodes"):
        values = [getattr(p, key) for p in seen]
        assert values == sorted(values), key
    assert [p.bc_updates for p in seen if p.phase == "pretrain"] == [0, 25, 30]
    sac = [p for p in seen if p.phase == "sac"]
    assert sac[0].step == 0 and sac[0].steps_per_s is None and sac[-1].step == result.step == 40
    assert all(p.steps_per_s > 0 for p in sac[1:]) and seen[0].expert_steps == 0 < seen[-1].expert_steps
    assert {p.last_eval for p in seen if p.last_eval} == {(e["step"], e["success_rate"]) for e in result.evals}
    assert seen[-1].recent_episodes == len(trainer.recent) > 0
    # the command's bars read the same reports
    out = io.StringIO()
    with ProgressBars(Console(file=out, width=150)) as bars:
        for p in seen:
            bars(p)
    for label in ProgressBars.LABELS.values():
        assert label in out.getvalue()
    assert "40/40" in out.getvalue() and "/s" in out.getvalue()


def test_a_save_killed_after_its_buffer_file_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, ["total_steps=1000"])
    trainer.seed_expert_episodes()
    trainer.save_checkpoint()
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    obs, _ = trainer.eval_env.reset(seed=0)
    nxt, reward, *_ = trainer.eval_env.step(np.zeros(5, np.float32))
    trainer.buffer.add(Transition(obs, np.zeros(5, np.float32), float(reward), nxt, 0.99))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing checkpoint.pt")

    monkeypatch.setattr(torch, "save", killed)  # the next save dies after its buffer file, before checkpoint.pt
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    resumed = _trainer(tmp_path, ["total_steps=1000"])
    resumed.load_checkpoint()
    assert len(resumed.buffer) == saved["buffer_size"] == len(trainer.buffer) - 1


def test_ctrl_c_leaves_a_usable_checkpoint(tmp_path):
    proc = _start_job(tmp_path, ["checkpoint_every=1000000"])  # only the Ctrl-C save writes one
    deadline = time.monotonic() + 120
    while not (tmp_path / "config.yaml").exists():  # written once the loop is about to start
        assert proc.poll() is None and time.monotonic() < deadline, "job did not start"
        time.sleep(0.2)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] > 0
    trainer = _trainer(tmp_path, [f"total_steps={saved['step'] + 10}"])
    assert trainer.run().step == saved["step"] + 10


def test_typo_key_is_refused_naming_it(capsys):
    with pytest.raises(config.ConfigError, match=r"lrr.*valid keys.*'lr'"):
        config.load(TrainConfig, "train_toy", ["sac.lrr=1e-3"])
    with pytest.raises(config.ConfigError, match="total_step"):
        config.load(TrainConfig, "train_toy", ["total_step=10"])
    assert cli.main(["train", "train_toy", "netwrk.family=cnn"]) == 2
    assert "netwrk" in capsys.readouterr().err
    with pytest.raises(config.ConfigError, match="unknown network family 'cnnn'"):
        _trainer(Path("/tmp/unused"), ["network.family=cnnn"])


def test_incompatible_checkpoint_is_refused(tmp_path):
    trainer = _trainer(tmp_path, ["total_steps=4"])
    trainer.run()
    other = _trainer(tmp_path, ["network.group=C8"])
    with pytest.raises(CheckpointError, match=r"network group: expected 'C4', got 'C8'"):
        other.run()
    bigger = _trainer(tmp_path, ["env.heightmap_size=32"])
    with pytest.raises(CheckpointError, match=r"heightmap.size: expected 16, got 32"):
        bigger.load_checkpoint()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        _trainer(tmp_path, []).load_checkpoint()
    assert np.isfinite(trainer.evals[-1]["return"])
