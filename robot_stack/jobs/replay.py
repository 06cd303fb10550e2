"""The replay job: re-execute a recorded sim episode from its seed and layout and measure the divergence."""

from __future__ import annotations

from typing import Any

import numpy as np


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


def replay_episode(path: str, episode: int) -> dict[str, Any]:
    """``replay`` of episode ``episode`` of the store at ``path``."""
    from robot_stack.recorder import EpisodeDataset

    return replay(EpisodeDataset(path, cache=False).episode(episode, extras=False))
