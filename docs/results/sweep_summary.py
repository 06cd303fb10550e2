"""Summarise a finished ``robot-stack sweep`` (job: train) run as the tables in training.md.

Usage: ``python docs/results/sweep_summary.py runs/sweep_toy`` (or ``runs/sweep_push_cpu``) prints markdown:
final eval success per family x variant (mean and 95% t-band over seeds, each seed's value), the random policy
and the scripted expert on the same eval seeds (on the toy task also the expert without bias compensation), and
how far each relaxed actor's weights w_l(h) moved from uniform (0 = exactly equivariant).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import sim
from robot_stack.jobs.evaluation import eval_episode_seed
from robot_stack.jobs.grid import confidence_band
from robot_stack.jobs.train import read_checkpoint
from sim.toy import ToyReachExpert


def final_rows(run: Path) -> list[dict[str, Any]]:
    with open(run / "final.csv", newline="") as fh:
        return [{**r, "seed": int(r["seed"]), "success_rate": float(r["success_rate"]), "seconds": float(r["seconds"])}
                for r in csv.DictReader(fh)]


def success_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | family | final success, mean [95% band] | per seed | trial wall, mean |",
             "|---|---|---|---|---|"]
    for variant in sorted({r["variant"] for r in rows}, key=lambda v: v != "none"):
        for family in ("relaxed", "exact", "cnn_aug"):
            sel = sorted((r for r in rows if (r["variant"], r["family"]) == (variant, family)), key=lambda r: r["seed"])
            if not sel:
                continue
            values = np.array([[r["success_rate"]] for r in sel])
            mean, half = (float(x[0]) for x in confidence_band(values))
            seeds = " / ".join(f"{r['success_rate']:.2f}" for r in sel)
            wall = np.mean([r["seconds"] for r in sel])
            lines.append(f"| {variant} | {family} | {mean:.2f} [{mean - half:.2f}, {mean + half:.2f}] | {seeds} "
                         f"| {wall:.0f} s |")
    return lines


class RandomActions:
    def __init__(self, env: Any) -> None:
        self.env, self.rng = env, np.random.default_rng(0)

    def reset(self) -> None:
        pass

    def act(self, obs: dict, env: Any) -> np.ndarray:
        return self.rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)


def policy_rate(cfg: dict[str, Any], make_actor: Callable[[Any], Any], seeds: list[int]) -> tuple[int, int]:
    """Successes of ``make_actor(env)`` on the trials' eval episodes (the resets Trainer.evaluate uses)."""
    env = sim.make_env(cfg["task"], **cfg["env"])
    actor = make_actor(env)
    wins, episodes = 0, int(cfg["eval_episodes"])
    for seed in seeds:
        for ep in range(episodes):
            obs, _ = env.reset(seed=eval_episode_seed(seed, ep))
            actor.reset()
            done, info = False, {}
            while not done:
                obs, _, terminated, truncated, info = env.step(np.asarray(actor.act(obs, env), dtype=np.float32))
                done = terminated or truncated
            wins += bool(info.get("success", False))
    env.close()
    return wins, len(seeds) * episodes


def baseline_lines(run: Path, rows: list[dict[str, Any]]) -> list[str]:
    toy = read_checkpoint(_trial_dir(run, rows[0]) / "checkpoint.pt")["config"]["task"] in sim.TOY_TASKS
    lines = ["| variant | random actions | scripted expert |" + (" expert, no compensation |" if toy else ""),
             "|---|---|---|" + ("---|" if toy else "")]
    for variant in sorted({r["variant"] for r in rows}, key=lambda v: v != "none"):
        trial = next(r for r in rows if r["variant"] == variant)
        cfg = read_checkpoint(_trial_dir(run, trial) / "checkpoint.pt")["config"]
        task = cfg["task"]
        actors: list[Callable[[Any], Any]] = [RandomActions, lambda env, task=task: sim.make_expert(task, env, 0.0, 0)]
        if toy:
            actors.append(lambda env: ToyReachExpert(env, compensate=False))
        cells = [policy_rate(cfg, make_actor, sorted({r["seed"] for r in rows})) for make_actor in actors]
        lines.append(f"| {variant} | " + " | ".join(f"{w}/{n} = {w / n:.2f}" for w, n in cells) + " |")
    return lines


def _trial_dir(run: Path, row: dict[str, Any]) -> Path:
    return run / "trials" / f"{row['family']}_{row['variant']}_s{row['seed']}"


def nonuniformity(w: np.ndarray) -> float:
    """mean |w_l(h) - mean_h w_l(h)| / mean |w_l(h)| over h and banks l: 0 when every bank is uniform over G."""
    return float(np.abs(w - w.mean(axis=0, keepdims=True)).mean() / np.abs(w).mean())


def plotted_spread(w: np.ndarray) -> float:
    """max_h - min_h of relaxed_weights.png's curve, w(h) averaged over banks times L|G| (1 = the initial value)."""
    curve = w.mean(axis=1) * w.size
    return float(curve.max() - curve.min())


def weights_lines(run: Path, rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | seed | per actor layer: non-uniformity (plotted spread) |", "|---|---|---|"]
    per_variant: dict[str, list[float]] = {}
    for row in sorted((r for r in rows if r["family"] == "relaxed"), key=lambda r: (r["variant"] != "none", r["seed"])):
        actor = read_checkpoint(_trial_dir(run, row) / "checkpoint.pt")["agent"]["actor"]
        layers = [(k, v.numpy()) for k, v in actor.items() if k.endswith("relaxed_weights")]
        cells = [f"{nonuniformity(w):.3f} ({plotted_spread(w):.3f})" for _, w in layers]
        per_variant.setdefault(row["variant"], []).extend(nonuniformity(w) for _, w in layers)
        lines.append(f"| {row['variant']} | {row['seed']} | " + " / ".join(cells) + " |")
    lines.append("")
    for variant, values in per_variant.items():
        lines.append(f"- {variant}: mean non-uniformity over seeds and layers {np.mean(values):.3f} "
                     f"(min {min(values):.3f}, max {max(values):.3f})")
    return lines


def main(run_dir: str) -> None:
    run = Path(run_dir)
    rows = final_rows(run)
    for block in (success_table(rows), baseline_lines(run, rows), weights_lines(run, rows)):
        print("\n".join(block), end="\n\n")


if __name__ == "__main__":
    main(sys.argv[1])
