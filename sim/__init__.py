"""Simulated manipulation tasks on robosuite/MuJoCo seen from a top-down depth camera (docs/sim.md), and the GL-free
toy reach task (``sim.toy``).

``make_env(task, **cfg)`` builds a gymnasium env of any task (cfg keys: ``sim.config.SimConfig``, or
``sim.toy.ToyReachConfig`` for ``toy_reach``), ``make_expert(task, env, noise, seed)`` its scripted expert,
``make_vector_env(task, n, ...)`` parallel envs, and ``policy_spec(env, group, family)`` the policy spec its
observations define. These are the only builders: every job, benchmark and the sim-backed arm use them.
"""

from __future__ import annotations

import functools
from typing import Any

from sim.gl import use_offscreen_gl
from sim.variants import VARIANTS

use_offscreen_gl()  # before mujoco, robosuite or OpenGL is imported anywhere (sim/gl.py)

TASKS = ("lift", "stack", "door", "push", "reach")
TOY_TASKS = ("toy_reach",)
ALL_TASKS = TASKS + TOY_TASKS

__all__ = ["ALL_TASKS", "TASKS", "TOY_TASKS", "VARIANTS", "env_config", "make_env", "make_expert", "make_vector_env",
           "policy_spec"]


def check_task(task: str) -> None:
    if task not in ALL_TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {list(ALL_TASKS)}")


def make_env(task: str, **cfg: Any):
    """A ``sim.env.ManipulationEnv`` (or ``sim.toy.ToyReachEnv``); an unknown task, variant or config key is a
    ValueError listing the valid ones. The toy task needs neither robosuite nor MuJoCo."""
    check_task(task)
    if task in TOY_TASKS:
        from sim.toy import make_toy_env

        return make_toy_env(**cfg)
    from sim.env import ManipulationEnv

    return ManipulationEnv(task, env_config(task, cfg, "sim"))


def env_config(task: str, cfg: dict[str, Any], where: str = "env") -> Any:
    """``cfg`` checked as ``task``'s typed config (``SimConfig``, or ``ToyReachConfig`` for ``toy_reach``) without
    building the env or importing robosuite; a bad key or value is a ConfigError naming ``<where>.<key>``."""
    from robot_stack.config import ConfigError, build, check_choice

    check_choice("task", task, ALL_TASKS)
    if task in TOY_TASKS:
        from sim.toy import ToyReachConfig

        return build(ToyReachConfig, dict(cfg), where)
    from sim.config import SimConfig
    from sim.variants import check_task as check_variant_task

    built = build(SimConfig, dict(cfg), where)
    try:
        check_variant_task(built.variant, task)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from exc
    return built


def make_expert(task: str, env, noise: float = 0.0, seed: int | None = None):
    """The task's scripted expert acting in ``env``, with Gaussian action noise of std ``noise``."""
    check_task(task)
    if task in TOY_TASKS:
        from sim.toy import make_toy_expert

        return make_toy_expert(env, noise, seed)
    from sim.experts import make_expert as _make

    return _make(task, env, noise, seed)


def make_vector_env(task: str, n: int, seed: int | None = None, asynchronous: bool = True, **cfg: Any):
    """``n`` envs in a gymnasium AsyncVectorEnv (subprocesses) or SyncVectorEnv, autoreset in the same step
    (``final_obs`` / ``final_info``); with ``seed``, env i is built with config seed ``seed + i``."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of envs) must be a positive integer, got {n!r}")
    if "seed" in cfg:
        raise ValueError("pass the base seed as make_vector_env(..., seed=S), not in cfg")
    check_task(task)
    configs = [dict(cfg) if seed is None else {**cfg, "seed": seed + i} for i in range(n)]
    fns = [functools.partial(make_env, task, **c) for c in configs]
    if asynchronous and n > 1:
        # forkserver: robosuite and EGL state must not be forked from a parent that already holds them.
        return gym.vector.AsyncVectorEnv(fns, context="forkserver", autoreset_mode=AutoresetMode.SAME_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def policy_spec(env, group: str, family: str):
    """The ``PolicySpec`` of a policy for ``env``'s observations and actions, with the network's group and family."""
    from robot_stack.specs import PolicySpec
    from robot_stack.symmetry import Group

    obs_spec, action_spec, hm_spec = env.unwrapped.policy_spec_parts
    return PolicySpec(obs_spec, action_spec, hm_spec, group=Group.parse(str(group)).name, family=str(family))
