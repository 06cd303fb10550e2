"""Kill -9 trials: a child process records at full speed and is SIGKILLed at a random moment.

Used by ``tests/test_recorder_crash.py`` (>= 20 trials) and ``robot-stack bench recorder crash=N``.
Every episode's content is a function of its ``seed`` metadata, so after each kill the parent
regenerates every committed episode and compares it bit for bit.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec

OBS_SPEC = ObservationSpec.create(HeightmapSpec(32))
ACTION_SPEC = ActionSpec()


def episode_steps(seed: int, obs_spec: ObservationSpec = OBS_SPEC) -> list[tuple[dict, np.ndarray, float, dict]]:
    """The deterministic episode of ``seed``: 3..24 steps of (obs, action, reward, info)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 25))
    steps = []
    for t in range(n):
        obs = {f.name: rng.random(f.shape, dtype=np.float32) for f in obs_spec.fields}
        info = {"terminal": t == n - 1 and seed % 2 == 0, "timestamp": float(seed * 1000 + t),
                "latency_policy": float(rng.random())}
        steps.append((obs, rng.uniform(-1, 1, 5).astype(np.float32), float(rng.normal()), info))
    return steps


def _record_forever(path: str, first_seed: int, writer_pid: Any) -> None:
    import logging

    from robot_stack.recorder import EpisodeRecorder

    logging.getLogger("robot_stack.recorder").setLevel(logging.ERROR)  # the parent checks; repairs are expected
    rec = EpisodeRecorder(path, OBS_SPEC, ACTION_SPEC, {"task": "crash-test"}, flush_steps=4)
    writer_pid.value = rec.writer_pid
    seed = first_seed
    while True:
        rec.start_episode({"seed": seed})
        for obs, act, rew, info in episode_steps(seed):
            rec.add_step(obs, act, rew, info)
        rec.end_episode(success=seed % 3 == 0)
        rec.flush()  # keep the writer busy without overflowing its queue: kills land inside writes
        seed += 1


def check_store(path: str | Path) -> int:
    """Compare every committed episode with its regenerated content; returns how many were checked."""
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(path, cache=False)
    data = {k: np.asarray(arr[: ds.state.n_steps]) for k, arr in ds.group["data"].arrays()}
    start = 0
    for i, end in enumerate(ds.state.ends):
        meta = ds.episode_meta(i)
        want = episode_steps(int(meta["seed"]))
        if end - start != len(want) or meta["length"] != len(want):
            raise AssertionError(f"episode {i} (seed {meta['seed']}) has {end - start} steps, want {len(want)}")
        for t, (obs, act, rew, info) in enumerate(want):
            s = start + t
            same = (all(np.array_equal(data[k][s], v) for k, v in obs.items())
                    and np.array_equal(data["action"][s], act) and data["reward"][s] == np.float32(rew)
                    and bool(data["terminal"][s]) == info["terminal"] and data["timestamp"][s] == info["timestamp"]
                    and data["latency_policy"][s] == np.float32(info["latency_policy"]))
            if not same:
                raise AssertionError(f"episode {i} (seed {meta['seed']}) differs at step {t}")
        start = int(end)
    return len(ds)


@dataclass
class CrashResult:
    trials: int = 0
    episodes_checked: int = 0
    kill_times_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_trials(path: str | Path, trials: int, rng: np.random.Generator, max_delay_s: float = 0.4,
               on_trial=None) -> CrashResult:
    """``trials`` kill -9 trials on one store (each child first repairs what the last one left).

    Even trials kill the recording process only (its writer process commits what was ended and exits);
    odd trials kill the recording process and its writer process together, as a power cut would.
    """
    ctx = mp.get_context("fork")
    result = CrashResult()
    for trial in range(trials):
        writer_pid = ctx.Value("q", 0, lock=False)
        child = ctx.Process(target=_record_forever, args=(str(path), trial * 1_000_000, writer_pid), daemon=True)
        child.start()
        while not writer_pid.value and child.is_alive():  # the clock starts once the child records
            time.sleep(0.005)
        delay = float(rng.uniform(0.02, max_delay_s))
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        if trial % 2 and writer_pid.value:
            os.kill(writer_pid.value, signal.SIGKILL)
        child.join()
        result.trials += 1
        result.kill_times_s.append(delay)
        if Path(path, "zarr.json").exists():
            try:
                result.episodes_checked = check_store(path)  # also while an orphaned writer still commits
                wait_for_writer(path)
                result.episodes_checked = check_store(path)
            except Exception as exc:  # noqa: BLE001 - collected and reported by the caller
                result.failures.append(f"trial {trial} (killed after {delay:.3f} s): {exc}")
        if on_trial:
            on_trial(trial)
    return result


def wait_for_writer(path: str | Path, timeout_s: float = 30.0) -> None:
    """Return once no writer process holds the store's lock (an orphaned one finishes its queue first)."""
    from robot_stack.recorder.writer_process import lock_store

    os.close(lock_store(Path(path), timeout_s))
