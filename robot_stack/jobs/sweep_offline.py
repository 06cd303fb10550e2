"""Offline grids for ``robot-stack sweep`` (``job: offline``): algos x families x datasets x seeds, one
``robot-stack offline`` job (``run_job``) per trial.

A sweep file for an offline grid (every other key as in ``robot_stack.jobs.sweep.SweepConfig``)::

    name: lift
    job: offline              # default: train (online SAC, robot_stack.jobs.train)
    base: offline_lift        # the offline launch file every trial starts from
    overrides: {steps: 100000}
    algos: [cql, iql, bc]
    families: [relaxed, exact, cnn, exact+cnn_aug]   # ACTOR+CRITIC: an actor and a critic of different families
    datasets:                 # zarr stores; each is labelled by its transition count ...
      - runs/datasets/lift_100.zarr
      - {name: expert, path: runs/datasets/lift_expert.zarr}   # ... or by the name given
    seeds: [0, 1, 2]

Every dataset is opened, checked as ``robot-stack offline`` checks it (empty, spec version, the task's specs,
NaN/inf) and counted, and every trial's job config built, before Ray starts: a missing, unreadable or bad store, a
typo'd key, an unknown algo or family fails there, naming it. A trial that diverges or raises is a row with its
error; a diverged one is kept like a finished one, one that raised otherwise (out of memory, a file gone) runs
again on the next start. Outputs in the sweep's out_dir: ``results.csv`` (one row per trial),
``success_vs_size.png`` (success against dataset size, one panel per algo, one line per family, mean over seeds
with a 95% t-band, the random policy dashed) and ``table.md`` (the same as a markdown table), rewritten after
every finished trial. Each finished trial's result is kept in ``trials/<label>/result.json``: run the same sweep
again and only the trials without one (or whose config, store content or resolved sim config changed since) run;
a trial's config holds its own algorithm's section only, so retuning CQL leaves the kept IQL and BC trials as they are.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_stack import config
from robot_stack.jobs import envs
from robot_stack.jobs.grid import NO_VARIANT, Dataset, SweepError, Trial, base_config, confidence_band
from robot_stack.tables import write_rows

if TYPE_CHECKING:
    from robot_stack.jobs.sweep import SweepConfig

ALGOS = ("cql", "iql", "bc")
DATASET_KEYS = ("name", "path")


# ---------------------------------------------------------------- the grid, checked before Ray starts

def check_offline(cfg: SweepConfig) -> None:
    bad = [a for a in cfg.algos if a not in ALGOS]
    if bad:
        raise ValueError(f"sweep algos {bad} unknown; valid: {list(ALGOS)}")
    if not cfg.datasets:
        raise ValueError("sweep job: offline needs datasets (zarr store paths, or {name, path} mappings)")
    if cfg.variants != [NO_VARIANT]:
        raise ValueError("sweep variants apply to job: train only; set an offline grid's env options in overrides")
    check_base(cfg)


def check_base(cfg: SweepConfig) -> None:
    """The base launch file with the sweep's overrides and each family, as an ``OfflineJob``: a bad value anywhere
    fails when the sweep file loads (the datasets are read later, by ``make_offline_trials``)."""
    from robot_stack.jobs.offline import OfflineJob

    base = base_config(cfg)
    overrides = [family_overrides(family) for family in cfg.families]
    try:
        for extra in overrides:
            config.build(OfflineJob, config.apply_overrides(base, extra))
    except config.ConfigError as exc:
        raise SweepError(f"sweep base {cfg.base!r} with its overrides: {exc}") from exc


def family_overrides(family: str) -> list[str]:
    """A sweep family is one network family for actor and critic, or ``ACTOR+CRITIC`` (e.g. ``exact+cnn_aug``: an
    equivariant actor with a plain critic) for the actor/critic ablation. Such a pair trains on turned batches
    (``jobs.offline.augments``), so a plain half is ``cnn_aug``: a bare ``cnn`` there is refused."""
    actor, _, critic = family.partition("+")
    if critic and critic != actor and "cnn" in (actor, critic):
        named = "+".join("cnn_aug" if f == "cnn" else f for f in (actor, critic))
        raise SweepError(f"sweep family {family!r}: a pair's batches are turned, so its plain cnn half would be "
                         f"cnn_aug; write {named!r}")
    return [f"network.family={actor}", f"network.critic_family={'' if critic == actor else critic}"]


def read_datasets(entries: list[Any], specs: tuple[Any, Any] | None = None) -> list[Dataset]:
    """Each entry (a path or ``{name, path}``) opened, checked as ``robot-stack offline`` checks it (non-empty, the
    task's ``(observation, action)`` specs when given, the spec version, finite values) and its transitions
    counted; errors name the entry and the store."""
    out = []
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        name, path = _dataset_entry(entry, where)
        ds = open_dataset(path, where, specs)
        n = _transitions(ds, where)
        out.append(Dataset(name or str(n), path, n, ds.fingerprint()))
    labels = [d.label for d in out]
    twins = sorted({x for x in labels if labels.count(x) > 1})
    if twins:
        raise SweepError(f"datasets: label(s) {twins} given to more than one store; give them distinct names "
                         f"({{name: ..., path: ...}})")
    return out


def _dataset_entry(entry: Any, where: str) -> tuple[str, str]:
    if isinstance(entry, str):
        return "", entry
    unknown = sorted(set(entry) - set(DATASET_KEYS))
    if unknown or "path" not in entry:
        raise SweepError(f"{where}: a dataset is a path or a mapping with keys {list(DATASET_KEYS)} (path required); "
                         f"got keys {sorted(entry)}")
    return str(entry.get("name") or ""), str(entry["path"])


def count_transitions(path: str, where: str, specs: tuple[Any, Any] | None = None) -> int:
    """Transitions as ``robot-stack offline`` loads them (``EpisodeDataset.transitions()``), after its checks."""
    return _transitions(open_dataset(path, where, specs), where)


def open_dataset(path: str, where: str, specs: tuple[Any, Any] | None = None) -> Any:
    """The store at ``path``, checked as ``robot-stack offline`` checks it; a SweepError naming ``where`` if not."""
    from robot_stack.recorder import EpisodeDataset
    from robot_stack.specs import SpecError

    if "://" not in path and not Path(path).exists():
        raise SweepError(f"{where}: dataset {path!r} does not exist (make it with `robot-stack collect "
                         f"collect_offline task=TASK sizes=[...]`)")
    try:
        ds = EpisodeDataset(path)
        ds.check(*(specs or (None, None)))
    except (FileNotFoundError, SpecError) as exc:
        raise SweepError(f"{where}: cannot use dataset {path!r}: {exc}") from exc
    return ds


def _transitions(ds: Any, where: str) -> int:
    n = ds.n_transitions()
    if n == 0:
        raise SweepError(f"{where}: cannot use dataset {ds.path!r}: no transitions (no episode has a step after "
                         f"its first, nor a terminal step)")
    return n


def task_specs(base: dict[str, Any]) -> tuple[Any, Any]:
    """The (observation, action) specs of the base job's task and env options, which every trial shares."""
    import sim
    from robot_stack.jobs.offline import OfflineJob

    job = config.build(OfflineJob, base)
    env = sim.make_env(job.task, **job.env)
    try:
        obs_spec, action_spec, _ = env.policy_spec_parts
    finally:
        env.close()
    return obs_spec, action_spec


def make_offline_trials(cfg: SweepConfig) -> list[Trial]:
    """The grid of a ``job: offline`` sweep, each trial's ``OfflineJob`` built (and so checked) up front."""
    base = base_config(cfg)
    datasets = read_datasets(cfg.datasets, task_specs(base))
    trials = []
    for dataset in datasets:
        for algo in cfg.algos:
            for family in cfg.families:
                for seed in cfg.seeds:
                    trial = Trial(f"{algo}_{family}_{dataset.label}_s{seed}", family, seed, algo=algo,
                                  dataset=dataset)
                    try:
                        trial.job_config = _job_config(base, trial, cfg.run_dir)
                    except config.ConfigError as exc:
                        raise SweepError(f"sweep base {cfg.base!r} with trial {trial.label}: {exc}") from exc
                    trial.inputs = {"dataset": dataset.fingerprint,
                                    "env": envs.resolved_env(trial.job_config["task"], trial.job_config["env"])}
                    trials.append(trial)
    return trials


def _job_config(base: dict[str, Any], trial: Trial, run_dir: Path) -> dict[str, Any]:
    from robot_stack.jobs.offline import OfflineJob

    data = config.apply_overrides(base, [f"algo={trial.algo}", *family_overrides(trial.family),
                                         f"seed={trial.seed}", "progress=false", "export=false"])
    data.update(datasets=[trial.dataset.path], out_dir=str(run_dir / "trials"), name=trial.label)
    # the other algorithms' settings do not reach this trial: changing them must not make its kept result stale
    data.update({algo: {} for algo in ALGOS if algo != trial.algo})
    return config.to_dict(config.build(OfflineJob, data))


# ---------------------------------------------------------------- one trial (inside a Ray worker)

def run_offline_trial(job_config: dict[str, Any], setup: Callable[[], Any] | None = None) -> dict[str, Any]:
    """One offline job: its evaluation, last logged training metrics, and a random policy on the same seeds.

    A run that diverges (non-finite loss) or raises while training is a result, not a crash of the whole grid: it
    comes back with ``error`` set, no success rate, and ``diverged`` saying which of the two it was."""
    if setup is not None:
        setup()
    from robot_stack.jobs.offline import OfflineJob, run_job

    job = config.build(OfflineJob, job_config)
    started = time.perf_counter()
    try:
        summary = run_job(job)
    except Exception as exc:  # any failure of one cell is that cell's row; the grid goes on
        return {"error": error_text(exc), "diverged": isinstance(exc, FloatingPointError),
                "seconds": time.perf_counter() - started, "random_success": cached_random_success(job)}
    last = summary["history"][-1] if summary["history"] else {}
    metrics = {k: v for k, v in last.items() if k != "step"}
    if "eval_last_iterate" in summary:  # with the actor's weights averaged: how the last update's actor scored
        metrics["last_iterate_success"] = summary["eval_last_iterate"]["success_rate"]
    ev = summary["eval"]
    return {"success_rate": ev["success_rate"], "return": ev["mean_return"], "length": ev["mean_length"],
            "transitions": summary["transitions"], "train_seconds": summary["train_seconds"],
            "seconds": time.perf_counter() - started, "random_success": cached_random_success(job),
            "metrics": metrics, "error": ""}


def error_text(exc: BaseException) -> str:
    """One line for the results row: the exception's type and first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def keeps_result(result: dict[str, Any]) -> bool:
    """A rerun reuses a finished trial and a diverged one (it would diverge again); one that failed otherwise may
    have met a passing problem (memory, a file being rewritten), so it runs again."""
    return not result.get("error") or bool(result.get("diverged"))


def failed_trial(exc: BaseException) -> dict[str, Any]:
    """The row of a trial whose Ray task itself failed (a worker killed, out of memory)."""
    return {"error": error_text(exc), "random_success": math.nan}


def trial_success(result: dict[str, Any]) -> float:
    """A diverged trial has no success rate: NaN."""
    return result.get("success_rate", math.nan)


def cached_random_success(job: Any) -> float:
    """``random_success``, computed once per task, resolved env config, seed and episode count in a sweep: every
    algo, family and dataset of a seed shares it (kept in ``<out_dir>/random/``, beside the trials' runs)."""
    key = {"task": job.task, "env": envs.resolved_env(job.task, job.env), "seed": job.seed,
           "episodes": job.eval_episodes}
    name = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(job.out_dir) / "random" / f"{name}.json"
    if path.is_file():
        return float(json.loads(path.read_text())["success_rate"])
    rate = random_success(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two workers may compute it at once: each renames a whole file
    tmp.write_text(json.dumps({**key, "success_rate": rate}, default=str))
    tmp.replace(path)
    return rate


def random_success(job: Any) -> float:
    """Uniform random actions on the job's evaluation episodes (same env seeds as its policy's)."""
    import sim
    from robot_stack.jobs.evaluation import evaluate, random_policy

    env = sim.make_env(job.task, **job.env)
    try:
        return evaluate(random_policy(env, job.seed), env, job.eval_episodes, job.seed)["success_rate"]
    finally:
        env.close()


# ---------------------------------------------------------------- results: CSV, PNG, table

CSV_FIELDS = ("algo", "family", "dataset", "transitions", "seed", "success_rate", "random_success", "return",
              "length", "train_seconds", "seconds", "error")


def write_offline_results(out: Path, trials: list[Trial], results: list[dict[str, Any]]) -> None:
    """``results.csv``: one row per trial; the last logged training metrics (algorithm-specific) after the fixed
    columns, blank where an algorithm does not log them."""
    metrics = sorted({k for r in results for k in r.get("metrics", {})})
    rows = []
    for trial, res in zip(trials, results, strict=True):
        row = {"algo": trial.algo, "family": trial.family, "dataset": trial.dataset.label,
               "transitions": res.get("transitions", trial.dataset.transitions), "seed": trial.seed,
               **{k: _round(res.get(k, "")) for k in CSV_FIELDS[5:]}}
        rows.append(row | {k: _round(v) for k, v in res.get("metrics", {}).items()})
    write_rows(out / "results.csv", rows, (*CSV_FIELDS, *metrics))


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def read_offline_results(path: Path) -> list[dict[str, Any]]:
    def number(text: str) -> float:
        return float(text) if text != "" else math.nan

    with open(path, newline="") as fh:
        return [{**row, "transitions": int(row["transitions"]), "seed": int(row["seed"]),
                 "success_rate": number(row["success_rate"]), "random_success": number(row["random_success"])}
                for row in csv.DictReader(fh)]


@dataclass
class Cell:
    transitions: int
    mean: float
    half: float
    seeds: int  # finished (non-diverged) seeds behind the mean
    runs: int = 1  # trials behind the cell, diverged ones included (0: none has finished yet)


NOT_RUN = Cell(0, math.nan, math.nan, 0, runs=0)


def grid_cells(rows: list[dict[str, Any]], metric: str = "success_rate") -> dict[tuple[str, str, str], Cell]:
    """(algo, family, dataset) -> mean over seeds with the 95% t half-width (``jobs.grid.confidence_band``)."""
    out = {}
    for key in dict.fromkeys((r["algo"], r["family"], r["dataset"]) for r in rows):
        sel = [r for r in rows if (r["algo"], r["family"], r["dataset"]) == key]
        values = np.array([r[metric] for r in sel if math.isfinite(r[metric])])
        mean, half = confidence_band(values) if len(values) else (math.nan, math.nan)
        out[key] = Cell(sel[0]["transitions"], float(mean), float(half), len(values), len(sel))
    return out


def random_cells(rows: list[dict[str, Any]]) -> dict[str, Cell]:
    """dataset -> the random policy's success over the seeds (one value per seed: it does not depend on algo)."""
    out = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        per_seed = {r["seed"]: r["random_success"] for r in rows if r["dataset"] == dataset}
        values = np.array([v for v in per_seed.values() if math.isfinite(v)])
        mean, half = confidence_band(values) if len(values) else (math.nan, math.nan)
        transitions = next(r["transitions"] for r in rows if r["dataset"] == dataset)
        out[dataset] = Cell(transitions, float(mean), float(half), len(values))
    return out


def _datasets_by_size(rows: list[dict[str, Any]]) -> list[str]:
    sizes = {r["dataset"]: r["transitions"] for r in rows}
    return sorted(sizes, key=lambda d: (sizes[d], d))


def offline_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: success mean +- 95% half-width per algo x family (rows) and dataset (columns)."""
    datasets = _datasets_by_size(rows)
    cells = grid_cells(rows)
    rand = random_cells(rows)
    sizes = {d: rand[d].transitions for d in datasets}
    head = ["algo", "family"] + [d if d == str(sizes[d]) else f"{d} ({sizes[d]})" for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo, family in dict.fromkeys((a, f) for a, f, _ in cells):
        texts = [_cell_text(cells.get((algo, family, d), NOT_RUN)) for d in datasets]
        lines.append(f"| {algo} | {family} | " + " | ".join(texts) + " |")
    lines.append("| random | - | " + " | ".join(_cell_text(rand[d]) for d in datasets) + " |")
    return "\n".join(lines) + "\n"


def _cell_text(cell: Cell) -> str:
    if not cell.runs:
        return "-"
    if not cell.seeds:
        return "diverged"
    return f"{cell.mean:.2f} ± {cell.half:.2f}" + ("" if cell.seeds > 1 else " (1 seed)")


def plot_success_vs_size(csv_path: Path, png_path: Path) -> None:
    from robot_stack.plotting import draw_curves, pyplot

    plt = pyplot()
    rows = read_offline_results(csv_path)
    datasets = _datasets_by_size(rows)
    cells, rand = grid_cells(rows), random_cells(rows)
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    x = np.arange(len(datasets))
    fig, axes = plt.subplots(1, len(algos), figsize=(4.5 * len(algos), 3.8), squeeze=False, sharey=True)
    for ax, algo in zip(axes[0], algos, strict=True):
        lines = {family: _curve(x, [cells.get((algo, family, d), NOT_RUN) for d in datasets])
                 for family in dict.fromkeys(f for a, f, _ in cells if a == algo)}
        lines["random"] = _curve(x, [rand[d] for d in datasets])
        if len(datasets) == 1:  # one point per family, each with its error bar: side by side, not on top
            lines = {name: (cx + offset, *rest) for offset, (name, (cx, *rest))
                     in zip(np.linspace(-0.25, 0.25, len(lines)), lines.items(), strict=True)}
            ax.set_xlim(-0.5, 0.5)
        draw_curves(ax, lines, styles={"random": {"color": "grey", "ls": "--"}}, band_alpha=0.2, marker="o")
        ax.set_title(algo)
        ax.set_xticks(x, [str(rand[d].transitions) if d == str(rand[d].transitions) else f"{d}\n({rand[d].transitions})"
                          for d in datasets])
        ax.set_xlabel("dataset transitions")
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("eval success rate (mean, 95% CI)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def _curve(x: np.ndarray, cells: list[Cell]) -> tuple[np.ndarray, ...]:
    """x, the mean over seeds per dataset, and its 95% band (clipped to [0, 1], where a success rate lies)."""
    mean = np.array([c.mean for c in cells])
    half = np.array([c.half for c in cells])
    return x, mean, np.clip(mean - half, 0.0, 1.0), np.clip(mean + half, 0.0, 1.0)


def write_offline_outputs(out: Path, trials: list[Trial], results: list[dict[str, Any]]) -> None:
    write_offline_results(out, trials, results)
    plot_success_vs_size(out / "results.csv", out / "success_vs_size.png")
    (out / "table.md").write_text(offline_table(read_offline_results(out / "results.csv")))
