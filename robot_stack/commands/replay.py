"""robot-stack replay PATH --episode N: re-execute a recorded sim episode and report the divergence."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

HELP = "re-execute a recorded episode's actions in sim from its seed and layout; report the divergence"
DESCRIPTION = HELP + """

Examples:
  robot-stack replay runs/collect_lift.zarr --episode 3
  robot-stack replay runs/collect_lift.zarr --episode 3 --tolerance 1e-3

Needs an episode recorded by 'robot-stack collect' (its metadata holds the task, the sim config,
the reset seed and the initial layout). Exit status 0 when every step's observation and reward
match within --tolerance, 1 when they do not."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the episode store")
    parser.add_argument("--episode", type=int, required=True, help="which episode")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted absolute difference")


def run(args: argparse.Namespace) -> int:
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(args.path, cache=False)
    report = replay(ds.episode(args.episode, extras=False))
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    ok = report["max_divergence"] <= args.tolerance
    print(f"episode {args.episode}: {'reproduced' if ok else 'DIVERGED'} (max divergence "
          f"{report['max_divergence']:.3g}, tolerance {args.tolerance:g})")
    return 0 if ok else 1


def replay(ep: Any) -> dict[str, Any]:
    """Reset the sim as recorded, apply the recorded actions, compare observations and rewards step by step."""
    import sim
    from robot_stack.specs import SpecError

    meta = ep.meta
    missing = [k for k in ("task", "seed", "sim") if k not in meta]
    if missing:
        raise SpecError(f"episode {ep.index} has no {missing} in its metadata: it was not recorded by "
                        "'robot-stack collect' and cannot be replayed in sim")
    env = sim.make_env(meta["task"], **meta["sim"])
    try:
        options = {"layout": {k: tuple(v) for k, v in meta["layout"].items()}} if meta.get("layout") else None
        obs, _ = env.reset(seed=int(meta["seed"]), options=options)
        worst = {name: 0.0 for name in ep.obs}
        reward_err, first_bad = 0.0, None
        for t in range(len(ep)):
            diffs = {k: float(np.max(np.abs(obs[k] - ep.obs[k][t]))) for k in ep.obs}
            for k, d in diffs.items():
                worst[k] = max(worst[k], d)
            obs, reward, _term, _trunc, info = env.step(ep.action[t])
            r_err = abs(float(reward) - float(ep.reward[t]))
            reward_err = max(reward_err, r_err)
            if first_bad is None and (max(diffs.values()) > 0 or r_err > 0):
                first_bad = t
    finally:
        env.close()
    total = max([*worst.values(), reward_err])
    return {"steps": len(ep), **{f"max |d {k}|": v for k, v in worst.items()}, "max |d reward|": reward_err,
            "first differing step": first_bad, "success recorded": meta.get("success"),
            "success replayed": bool(info.get("success", False)) if len(ep) else None, "max_divergence": total}
