"""Simulated manipulation tasks on robosuite/MuJoCo seen from a top-down depth camera (docs/sim.md).

``make_env(task, **cfg)`` builds a gymnasium env (cfg keys: ``sim.config.SimConfig``),
``make_expert(task, env, noise)`` a scripted expert, ``make_vector_env(task, n, seed, **cfg)`` parallel envs.
"""

from __future__ import annotations

from typing import Any

from sim.variants import VARIANTS

TASKS = ("lift", "stack", "door", "push", "reach")

__all__ = ["TASKS", "VARIANTS", "make_env", "make_expert", "make_vector_env"]


def make_env(task: str, **cfg: Any):
    """A ``sim.env.ManipulationEnv``; unknown task, variant or config key -> ValueError listing the valid ones."""
    from robot_stack.config import build
    from sim.config import SimConfig
    from sim.env import ManipulationEnv, check_task

    check_task(task)
    return ManipulationEnv(task, build(SimConfig, dict(cfg), where="sim"))


def make_expert(task: str, env, noise: float = 0.0, seed: int | None = None):
    from sim.experts import make_expert as _make

    return _make(task, env, noise, seed)


def make_vector_env(task: str, n: int, seed: int = 0, asynchronous: bool = True, **cfg: Any):
    """``n`` envs in a gymnasium AsyncVectorEnv (subprocesses) or SyncVectorEnv; env i is seeded ``seed + i``."""
    from sim.vector import make_vector_env as _make

    return _make(task, n, seed, asynchronous, **cfg)
