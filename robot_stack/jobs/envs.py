"""The sim config an env runs with, resolved: what a kept sweep result, a cached baseline or a kept dataset store is
compared on, so that a change of a task's default is seen although no config file changed."""

from __future__ import annotations

from typing import Any

import sim
from robot_stack import config

# SimConfig keys whose 0 stands for the task's default (sim.env.TASK_DEFAULTS), resolved where the env is built.
TASK_DEFAULT_KEYS = ("horizon", "dpos", "dtheta")


def resolved_env(task: str, env: dict[str, Any]) -> dict[str, Any]:
    """``env`` as ``sim.make_env(task, **env)`` runs it: every key of the task's config with its value, the task's
    defaults in place of the 0s that stand for them. Two configs with the same result build the same env; a change
    of a default (push's horizon, 60 then 80) changes the result."""
    resolved = config.to_dict(sim.env_config(task, env))
    if task in sim.TOY_TASKS:
        return resolved
    from sim.env import TASK_DEFAULTS

    defaults = TASK_DEFAULTS[task]
    return {**resolved, **{key: resolved[key] or getattr(defaults, key) for key in TASK_DEFAULT_KEYS}}
