"""Mixed-quality toy reach datasets (sim/toy.py) for the CPU offline grid (launch/sweep_offline_toy.yaml).

    python scripts/toy_datasets.py                                  # runs/datasets/toy_reach_{100,300,1000}.zarr
    python scripts/toy_datasets.py --sizes 100 --noise 0.1 2.0 --overwrite

`robot-stack collect` builds robosuite tasks only (sim.make_env), so this records the toy expert itself, with
collect's episode loop (`record_episodes`): episode i is reset with seed i, uses noise[i % len(noise)], and the store
ends at exactly N transitions as EpisodeDataset counts them (last episode cut; `cut: true` in its metadata).
Prints per store: transitions, episodes, and successful / episodes per noise level.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

SIZES = (100, 300, 1000)
NOISE = (0.1, 0.5, 1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="transitions per store")
    parser.add_argument("--noise", type=float, nargs="+", default=list(NOISE), help="expert noise std per episode")
    parser.add_argument("--heightmap-size", type=int, default=32)
    parser.add_argument("--out-dir", default="runs/datasets")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing store of the same name first")
    args = parser.parse_args(argv)
    for n in args.sizes:
        out = Path(args.out_dir) / f"toy_reach_{n}.zarr"
        if out.exists():
            if not args.overwrite:
                raise SystemExit(f"{out} exists; pass --overwrite to rebuild it")
            shutil.rmtree(out)
        record(out, n, list(args.noise), args.heightmap_size)
        print(describe(out), flush=True)
    return 0


def record(out: Path, transitions: int, noise: list[float], size: int, seed: int = 0) -> Path:
    """Noisy toy-expert episodes until the store holds exactly ``transitions`` transitions."""
    from robot_stack.jobs.collect import CollectJob, record_episodes
    from robot_stack.recorder import EpisodeRecorder
    from sim.toy import make_toy_env, make_toy_expert

    env = make_toy_env(heightmap_size=size)
    expert = make_toy_expert(env, seed=seed)
    obs_spec, action_spec, hm_spec = env.policy_spec_parts
    job = CollectJob(task="toy_reach", out=str(out), transitions=transitions, noise=noise, seed=seed)
    meta = {"task": "toy_reach", "env": {"heightmap_size": size}, "heightmap": hm_spec.to_dict(),
            "policy_id": "expert-toy_reach", "policy_version": "scripted", "noise": noise}

    def act(obs: dict[str, np.ndarray], reset: bool = False, noise: float = 0.0) -> np.ndarray:
        if reset:
            expert.noise = noise
            return np.zeros(0)
        return expert.act(obs, env)

    with EpisodeRecorder(out, obs_spec, action_spec, meta, when_full="wait") as rec:
        record_episodes(env, rec, act, job, noise)
    return out


def describe(path: Path) -> str:
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(path)
    infos = [ds.episode_meta(i) for i in range(len(ds))]
    per_noise: dict[float, Counter[str]] = {}
    for info in infos:
        counts = per_noise.setdefault(float(info["noise"]), Counter())
        counts["episodes"] += 1
        counts["success"] += int(bool(info.get("success")))
    mix = ", ".join(f"{k}: {c['success']}/{c['episodes']}" for k, c in sorted(per_noise.items()))
    return (f"{path}: {len(ds.transitions()['action'])} transitions, {ds.n_steps} steps, {len(ds)} episodes; "
            f"successful/episodes per noise std: {mix}")


if __name__ == "__main__":
    raise SystemExit(main())
