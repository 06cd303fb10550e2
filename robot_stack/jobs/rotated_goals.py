"""The world_goal ceiling test behind ``robot-stack evaluate --rotated-goals``: a push policy trained with the
world_goal variant, on its eval layouts, each episode rolled on to the horizon past success
(``sim.symmetry.rotated_goal_passes``). How often the cube passes the true goal (the success rate), how often it ends
in it, the endpoint bound on those layouts, and how many of the four C4-turned goals it passes: an exactly
equivariant policy's success over the turns of a layout is the share of those goals its path passes (docs/sim.md).
Policies are loaded and checked as ``robot_stack.jobs.robustness`` loads them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import sim
from robot_stack import config
from robot_stack.jobs.evaluation import eval_episode_seed
from robot_stack.jobs.robustness import RobustnessError, Subject, wilson


def rotated_goals_row(subject: Subject, episodes: int) -> dict[str, Any]:
    """A world_goal push policy on its eval layouts, each episode rolled to the horizon (``sim.symmetry.
    rotated_goal_passes``): how often the cube passes the true goal (the success rate), ends in it, and how many of
    the four C4-turned goals it passes."""
    from sim.symmetry import rotated_goal_passes

    env = sim.make_env(subject.task, **subject.env)
    start = time.perf_counter()
    try:
        seeds = [eval_episode_seed(subject.seed, i) for i in range(episodes)]
        passes = rotated_goal_passes(env, subject.act, seeds)
    except config.ConfigError as exc:
        raise RobustnessError(f"{subject.path}: {exc}") from exc
    finally:
        env.close()
    counts = np.array([sum(p.passed) for p in passes])
    successes = sum(p.passed[0] for p in passes)
    low, high = wilson(successes, episodes)
    return {"policy": subject.label, "family": subject.spec.family, "group": subject.spec.group,
            "path": str(subject.path), "seed": subject.seed, "strength": env.variant.strength, "episodes": episodes,
            "successes": successes, "success_rate": successes / episodes, "wilson_low": low, "wilson_high": high,
            "ends_in_goal": sum(p.ends_in_goal for p in passes) / episodes,
            "endpoint_bound": float(np.mean([1.0 / p.admissible_turns for p in passes])),
            "mean_goals_passed": float(counts.mean()), "share_two_or_more": float(np.mean(counts >= 2)),
            "seconds": round(time.perf_counter() - start, 1)}


def format_rotated_goals(rows: list[dict[str, Any]]) -> str:
    head = (f"{'policy':<24} | {'passes true goal':<16} | {'95% Wilson':<12} | {'ends in it':>10} | "
            f"{'endpoint bound':>14} | {'goals passed (of 4)':>19} | {'2 or more':>9}")
    return "\n".join([head, "-" * len(head), *map(_format_row, rows)])


def _format_row(r: dict[str, Any]) -> str:
    success = f"{r['successes']}/{r['episodes']} = {r['success_rate']:.2f}"
    return (f"{r['policy']:<24} | {success:<16} | [{r['wilson_low']:.2f}, {r['wilson_high']:.2f}] | "
            f"{r['ends_in_goal']:10.2f} | {r['endpoint_bound']:14.2f} | {r['mean_goals_passed']:19.2f} | "
            f"{r['share_two_or_more']:9.2f}")
