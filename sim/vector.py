"""Parallel rollouts through gymnasium's vector envs, autoreset in the same step (``final_obs`` / ``final_info``)."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode


def _build(task: str, cfg: dict[str, Any]):
    import sim

    return sim.make_env(task, **cfg)


def make_vector_env(task: str, n: int, seed: int | None, asynchronous: bool, **cfg: Any) -> gym.vector.VectorEnv:
    import sim

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of envs) must be a positive integer, got {n!r}")
    if "seed" in cfg:
        raise ValueError("pass the base seed as make_vector_env(..., seed=S), not in cfg")
    sim.check_task(task)
    seeds = [None if seed is None else seed + i for i in range(n)]
    fns = [functools.partial(_build, task, dict(cfg) if s is None else {**cfg, "seed": s}) for s in seeds]
    if asynchronous and n > 1:
        # forkserver: robosuite and EGL state must not be forked from a parent that already holds them.
        return gym.vector.AsyncVectorEnv(fns, context="forkserver", autoreset_mode=AutoresetMode.SAME_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
