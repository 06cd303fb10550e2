"""Robustness at test time, the job behind ``robot-stack evaluate``: trained policies (``robot-stack train``
checkpoints or exported ``.onnx`` packages) evaluated on their task's fixed eval layouts (``jobs.evaluation``) with
the sim depth camera's Gaussian noise and pixel dropout (``sim.cameras.DepthNoise``) at increasing levels.

Each noise level runs without dropout and each dropout level without noise, so the two sweeps share the clean
point. The success rate of each (policy, level) comes with its 95% Wilson interval over the episodes; the results
go to a table, a CSV and a PNG (one panel per sweep, one line per policy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import sim
from robot_stack import config
from robot_stack.jobs.evaluation import EVAL_EPISODES_PER_SEED, Policy, evaluate, torch_policy
from robot_stack.specs import PolicySpec, mismatches
from robot_stack.tables import write_rows

Z95 = 1.959964
NOISE_KEYS = ("depth_noise_std", "depth_dropout")  # the camera settings the levels own


class RobustnessError(ValueError):
    """Input this job cannot evaluate; the message names the file or option."""


@dataclass(frozen=True)
class Level:
    noise: float  # Gaussian depth noise std, metres
    dropout: float  # fraction of depth pixels that read 0


@dataclass
class Subject:
    """One policy to evaluate, with the task and env options its layouts and observations come from."""

    path: Path
    label: str
    act: Policy
    spec: PolicySpec
    task: str
    env: dict[str, Any]
    seed: int


# ----- options ------------------------------------------------------------------------------------------------

def parse_levels(text: str, option: str, below_one: bool = False) -> list[float]:
    """'0,0.005,0.01' -> floats, each finite and >= 0 (and < 1 for a dropout fraction); a RobustnessError
    naming the option and the bad value otherwise."""
    values = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise RobustnessError(f"{option}: {item!r} is not a number (give levels like 0,0.005,0.01)") from None
        if not math.isfinite(value) or value < 0 or (below_one and value >= 1):
            bound = "in [0, 1)" if below_one else ">= 0"
            raise RobustnessError(f"{option}: level {item} is not {bound}")
        values.append(value)
    return sorted(set(values))


def make_levels(noise: list[float], dropout: list[float]) -> list[Level]:
    """The noise sweep (no dropout), then the dropout levels the noise sweep does not already hold."""
    levels = [Level(n, 0.0) for n in noise]
    levels += [Level(0.0, d) for d in dropout if Level(0.0, d) not in levels]
    if not levels:
        raise RobustnessError("--noise and --dropout are both empty: give at least one level")
    return levels


def check_episodes(episodes: int) -> None:
    if not 1 <= episodes <= EVAL_EPISODES_PER_SEED:
        raise RobustnessError(f"--episodes: {episodes} is not in 1..{EVAL_EPISODES_PER_SEED} (the fixed eval "
                              f"layouts of a seed)")


def env_overrides(env: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``env`` with ``env.KEY=VALUE`` items applied; the camera noise keys belong to the levels."""
    for item in overrides:
        key = item.split("=", 1)[0]
        if not key.startswith("env.") or "=" not in item:
            raise RobustnessError(f"override {item!r}: only env.KEY=VALUE options of the eval env are accepted")
        if key[4:] in NOISE_KEYS:
            raise RobustnessError(f"override {item!r}: the camera noise is set by --noise and --dropout")
    return config.apply_overrides({"env": dict(env)}, overrides)["env"]


# ----- loading policies ---------------------------------------------------------------------------------------

def load_subjects(paths: list[str], task: str | None, overrides: list[str], seed: int | None) -> list[Subject]:
    """Every policy loaded and checked against its env before any episode runs: all on one task with a depth
    camera, each policy's spec the one its eval env produces."""
    subjects = [load_subject(Path(p), task, overrides, seed) for p in paths]
    for subject in subjects[1:]:
        if subject.task != subjects[0].task:
            raise RobustnessError(f"{subject.path}: a {subject.task!r} policy; {subjects[0].path} is a "
                                  f"{subjects[0].task!r} one (evaluate one task per call, or pass --task)")
    for subject in subjects:
        check_env(subject)
    name_subjects(subjects)
    return subjects


def load_subject(path: Path, task: str | None, overrides: list[str], seed: int | None) -> Subject:
    if not path.is_file():
        raise FileNotFoundError(f"no policy at {path}")
    if path.suffix == ".onnx":
        act, spec, trained = load_package(path)
    else:
        act, spec, trained = load_checkpoint(path)
    if trained is None and task is None:
        raise RobustnessError(f"{path}: holds no training config to take the task from (an ONNX package or an "
                              f"offline checkpoint): pass --task and the env options it was trained with, e.g. "
                              f"env.view=gripper env.heightmap_size=64")
    if trained is not None and task is not None and trained["task"] != task:
        raise RobustnessError(f"{path}: a policy trained on {trained['task']!r}, not {task!r}")
    trained = trained or {"task": task, "env": {}, "seed": 0}
    return Subject(path, "", act, spec, trained["task"], env_overrides(trained["env"], overrides),
                   trained["seed"] if seed is None else seed)


def load_checkpoint(path: Path) -> tuple[Policy, PolicySpec, dict[str, Any] | None]:
    from policies.checkpoint import load_actor, read_checkpoint

    actor, spec, _ = load_actor(path)
    trained = read_checkpoint(path).extra.get("config")
    if not isinstance(trained, dict) or "task" not in trained:
        return torch_policy(actor, spec), spec, None
    return torch_policy(actor, spec), spec, {"task": trained["task"], "env": dict(trained.get("env") or {}),
                                             "seed": int(trained.get("seed", 0))}


def load_package(path: Path) -> tuple[Policy, PolicySpec, None]:
    from robot_stack.runtime import load_policy_package

    package = load_policy_package(path)
    return package.act, package.spec, None


def check_env(subject: Subject) -> None:
    """The eval env builds with the subject's options, has a depth camera, and produces the policy's spec."""
    if subject.task in sim.TOY_TASKS:
        raise RobustnessError(f"{subject.path}: task {subject.task!r} has no depth camera to add noise to; "
                              f"valid tasks: {list(sim.TASKS)}")
    env = sim.make_env(subject.task, **subject.env)
    try:
        diffs = mismatches(sim.policy_spec(env, subject.spec.group, subject.spec.family), subject.spec)
    finally:
        env.close()
    if diffs:
        raise RobustnessError(f"{subject.path}: the policy's spec does not match the {subject.task!r} env "
                              f"{subject.env}: " + "; ".join(diffs))


def name_subjects(subjects: list[Subject]) -> None:
    """'relaxed C4', or with the file's folder and name where two policies share family and group."""
    short = [f"{s.spec.family} {s.spec.group}" for s in subjects]
    for subject, name in zip(subjects, short, strict=True):
        subject.label = name if short.count(name) == 1 else f"{name} ({subject.path.parent.name}/{subject.path.name})"


# ----- running ------------------------------------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sensible at 0 and n successes, unlike p +- z se)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_level(subject: Subject, level: Level, episodes: int) -> dict[str, Any]:
    # a policy trained under noise is still evaluated at each level's noise, not its training noise
    clean = {k: v for k, v in subject.env.items() if k not in NOISE_KEYS}
    env = sim.make_env(subject.task, **clean, depth_noise_std=level.noise, depth_dropout=level.dropout)
    start = time.perf_counter()
    try:
        scores = evaluate(subject.act, env, episodes, subject.seed)
    finally:
        env.close()
    successes = round(scores["success_rate"] * episodes)
    low, high = wilson(successes, episodes)
    return {"policy": subject.label, "family": subject.spec.family, "group": subject.spec.group,
            "task": subject.task, "path": str(subject.path), "seed": subject.seed, "noise_std_m": level.noise,
            "dropout": level.dropout, "episodes": episodes, "successes": successes,
            "success_rate": scores["success_rate"], "wilson_low": low, "wilson_high": high,
            "mean_return": scores["mean_return"], "mean_length": scores["mean_length"],
            "seconds": round(time.perf_counter() - start, 1)}


def run(subjects: list[Subject], levels: list[Level], episodes: int,
        report: Callable[[dict[str, Any]], None] = lambda row: None) -> list[dict[str, Any]]:
    """One row per (policy, level), policies in the order given; ``report`` sees each row when it is done."""
    rows = []
    for subject in subjects:
        for level in levels:
            rows.append(evaluate_level(subject, level, episodes))
            report(rows[-1])
    return rows


# ----- outputs ------------------------------------------------------------------------------------------------

def format_row(row: dict[str, Any]) -> str:
    success = f"{row['successes']}/{row['episodes']} = {row['success_rate']:.2f}"
    return (f"{row['policy']:<24} | {row['noise_std_m'] * 1000:8.1f} | {row['dropout']:7.2f} | {success:<16} | "
            f"[{row['wilson_low']:.2f}, {row['wilson_high']:.2f}] | {row['seconds']:6.1f}")


def table_header() -> str:
    head = f"{'policy':<24} | {'noise mm':>8} | {'dropout':>7} | {'success':<16} | {'95% Wilson':<12} | {'s':>6}"
    return head + "\n" + "-" * len(head)


def format_table(rows: list[dict[str, Any]]) -> str:
    return "\n".join([table_header(), *map(format_row, rows)])


def write_outputs(rows: list[dict[str, Any]], stem: str | Path) -> tuple[Path, Path]:
    """``<stem>.csv`` (one row per policy and level) and ``<stem>.png``."""
    csv_path = write_csv(rows, stem)
    return csv_path, plot(rows, csv_path.with_suffix(".png"))


def write_csv(rows: list[dict[str, Any]], stem: str | Path) -> Path:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return write_rows(stem.with_name(stem.name + ".csv"), rows)


PANELS = (("noise_std_m", "dropout", 1000.0, "Gaussian depth noise std (mm), no dropout"),
          ("dropout", "noise_std_m", 100.0, "depth pixels dropped (%), no noise"))


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """A panel per sweep that has more than the clean level; per policy its success rate with the Wilson band."""
    from robot_stack.plotting import pyplot, save_figure

    panels = [p for p in PANELS if len({r[p[0]] for r in rows if r[p[1]] == 0}) > 1] or [PANELS[0]]
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.5, 4.0), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        draw_panel(ax, rows, *panel)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    first = rows[0]
    fig.suptitle(f"{first['task']}: success under depth-camera noise ({first['episodes']} eval episodes per "
                 f"point, 95% Wilson bands)", fontsize=11)
    fig.tight_layout()
    return Path(save_figure(fig, path))


def draw_panel(ax: Any, rows: list[dict[str, Any]], key: str, other: str, scale: float, xlabel: str) -> None:
    from robot_stack.plotting import draw_curves

    lines: dict[str, tuple[np.ndarray, ...]] = {}
    for label in dict.fromkeys(r["policy"] for r in rows):
        points = sorted((r[key] * scale, r["success_rate"], r["wilson_low"], r["wilson_high"])
                        for r in rows if r["policy"] == label and r[other] == 0)
        lines[label] = tuple(map(np.asarray, zip(*points, strict=True)))
    draw_curves(ax, lines, band_alpha=0.18, legend=False, marker="o", lw=2)
    ax.set(xlabel=xlabel, ylabel="success rate", ylim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
