"""Parallel rollouts through gymnasium's vector envs; env i gets seed ``seed + i`` (resets and noise)."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym


def _build(task: str, seed: int, cfg: dict[str, Any]):
    import sim

    return sim.make_env(task, seed=seed, **cfg)


def make_vector_env(task: str, n: int, seed: int, asynchronous: bool, **cfg: Any) -> gym.vector.VectorEnv:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of envs) must be a positive integer, got {n!r}")
    if "seed" in cfg:
        raise ValueError("pass the base seed as make_vector_env(..., seed=S), not in cfg")
    import sim
    from sim.env import check_task

    check_task(task)
    if task not in sim.TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {list(sim.TASKS)}")
    fns = [functools.partial(_build, task, seed + i, dict(cfg)) for i in range(n)]
    if asynchronous:
        # forkserver: robosuite and EGL state must not be forked from a parent that already holds them.
        return gym.vector.AsyncVectorEnv(fns, context="forkserver")
    return gym.vector.SyncVectorEnv(fns)
