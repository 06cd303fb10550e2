"""``robot-stack sweep``: a grid of network families x seeds x task variants, one SAC training run each, on Ray;
or, with ``job: offline``, a grid of offline algos x families x datasets x seeds (``robot_stack.jobs.sweep_offline``,
whose docstring shows that sweep file).

Every trial is a Ray task (Ray core) that runs ``robot_stack.jobs.train`` (or, for ``job: offline``, ``robot-stack
offline``'s ``run_job``) with progress bars and export off. A ``job: train`` sweep writes
``<out_dir>/results.csv`` (one row per evaluation), ``<out_dir>/final.csv`` (one row per trial),
``<out_dir>/learning_curves.png`` (mean success over seeds with a 95% t-confidence band, one panel per
variant), ``<out_dir>/relaxed_weights.png`` (the relaxed group-convolution weights w_l(h) of every
relaxed actor, per layer and bank, as ``robot_stack.plotting.weight_grid`` draws them), ``success_vs_variant.png``
(numeric variants: the final success against them, a line per family) and ``<out_dir>/relaxed_spread.csv/.png``
(each relaxed layer's spread against the variant, which is a breaking strength in the symmetry sweeps). A
``job: offline`` sweep writes ``results.csv`` (one row per trial), ``success_vs_size.png`` and ``table.md``.

What differs between the two kinds lives in one table, ``JOBS``: a new kind of sweep is one ``Job`` entry there.
"""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack import config, plotting, provenance
from robot_stack.jobs import grid, sweep_offline
from robot_stack.jobs.grid import NO_VARIANT, Curve, SweepError, Trial, base_config, confidence_band, draw_curves
from robot_stack.plotting import pyplot, save_figure, weight_grids
from robot_stack.tables import write_rows


@dataclass
class SweepConfig:
    name: str = "sweep"
    base: str = "train_push"  # the training config (a file or a name in launch/) every trial starts from
    overrides: dict[str, Any] = field(default_factory=dict)  # nested keys applied to the base config
    families: list[str] = field(default_factory=lambda: ["relaxed", "exact", "cnn_aug"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: [NO_VARIANT])
    variant_key: str = "variant"  # env option that selects the variant ("none" leaves it unset)
    out_dir: str = "runs/sweep_{name}"
    num_cpus: int | None = None  # local Ray only; None = all cores
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    connect_timeout_s: float = 5.0
    job: str = "train"  # train: online SAC (base = a train launch file); offline: CQL/IQL/BC (base = offline_*)
    algos: list[str] = field(default_factory=lambda: ["cql", "iql", "bc"])  # job: offline only
    datasets: list[str | dict[str, str]] = field(default_factory=list)  # job: offline: paths or {name, path}

    def __post_init__(self) -> None:
        for key in ("families", "seeds", "variants", "algos"):
            if not getattr(self, key):
                raise ValueError(f"sweep {key} must not be empty")
        if self.job not in JOBS:
            raise ValueError(f"sweep job {self.job!r} is not one of {list(JOBS)}")
        JOBS[self.job].check(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir.format(name=self.name))




@dataclass(frozen=True)
class Job:
    """What one kind of sweep (``job:``) does at each stage; the rest of the sweep is the same for every kind."""
    check: Callable[[SweepConfig], None]  # the kind's own keys, in SweepConfig.__post_init__
    make_trials: Callable[[SweepConfig], list[Trial]]  # every trial's config built (so checked) before Ray starts
    run_trial: Callable[[dict[str, Any], Callable[[], Any] | None], dict[str, Any]]  # a Ray task: job_config -> result
    success: Callable[[dict[str, Any]], float]  # a result's final success rate, for the progress bar
    write_outputs: Callable[[Path, list[Trial], list[dict[str, Any]]], None]
    outputs: str  # the files write_outputs writes, as the CLI reports them
    # A trial whose Ray task failed (a worker killed) -> its row; None: the sweep stops there.
    failure: Callable[[BaseException], dict[str, Any]] | None = None
    # Keep each finished trial's result beside its run (reused by a rerun with the same trial config) and rewrite
    # the outputs after every trial, so that a stopped sweep has partial outputs and resumes.
    resumable: bool = False
    # Which results a rerun may reuse; the others (a transient failure) run again.
    keeps: Callable[[dict[str, Any]], bool] = lambda result: True


def make_trials(cfg: SweepConfig) -> list[Trial]:
    """The grid, each trial's config built (and so checked) up front: a typo fails before Ray starts."""
    return JOBS[cfg.job].make_trials(cfg)




def check_train(cfg: SweepConfig) -> None:
    """Also builds every trial's config, so a bad value in the base file, overrides, families or variants fails when
    the sweep file loads."""
    if cfg.datasets:
        raise ValueError("sweep datasets apply to job: offline only (set job: offline)")
    try:
        make_train_trials(cfg)
    except config.ConfigError as exc:
        raise SweepError(f"sweep base {cfg.base!r} with its overrides, families and variants: {exc}") from exc


def make_train_trials(cfg: SweepConfig) -> list[Trial]:
    base = base_config(cfg)
    trials = []
    for variant in cfg.variants:
        for family in cfg.families:
            for seed in cfg.seeds:
                trial = Trial(f"{family}_{variant}_s{seed}", family, seed, variant)
                trial.job_config = _train_config(base, trial, cfg)
                trials.append(trial)
    return trials


def _train_config(base: dict[str, Any], trial: Trial, cfg: SweepConfig) -> dict[str, Any]:
    from robot_stack.jobs.train import TrainConfig

    data = config.apply_overrides(base, [f"network.family={trial.family}", f"seed={trial.seed}",
                                         f"out_dir={cfg.run_dir / 'trials' / trial.label}",
                                         "progress=false", "export_onnx=false"])
    if trial.variant != NO_VARIANT:
        data.setdefault("env", {})[cfg.variant_key] = trial.variant
    return config.to_dict(config.build(TrainConfig, data))






def check_address(address: str, timeout: float) -> None:
    """Fail fast, naming the address, when nothing listens at ``host:port`` (``auto`` is left to Ray)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"Ray address {address!r} must look like HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(f"cannot reach the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); start one "
                         f"with `ray start --head` there, or leave out --address to run on a local Ray") from exc


def run_trial(train_config: dict[str, Any], setup: Callable[[], Any] | None = None) -> dict[str, Any]:
    """One training run (inside a Ray worker): eval history and the actor's relaxed weights."""
    if setup is not None:
        setup()
    from robot_stack.jobs.train import TrainConfig, Trainer

    tc = config.build(TrainConfig, train_config)
    trainer = Trainer(tc)
    started = time.perf_counter()
    result = trainer.run()
    return {"evals": result.evals, "seconds": time.perf_counter() - started,
            "relaxed_weights": relaxed_weights(trainer.agent.actor)}


def relaxed_weights(actor: Any) -> list[dict[str, Any]]:
    """The actor's relaxed layers (``relaxed_weights_report``): each with its spread (0 = equivariant), a relaxed
    group convolution also with its weights w_l(h)."""
    from policies.networks.diagnostics import relaxed_weights_report

    return relaxed_weights_report(actor)


def final_success(result: dict[str, Any]) -> float:
    return result["evals"][-1]["success_rate"] if result["evals"] else float("nan")


def write_train_outputs(out: Path, trials: list[Trial], results: list[dict[str, Any]]) -> None:
    write_results(out, trials, results)
    plot_learning_curves(out / "results.csv", out / "learning_curves.png")
    plot_success_vs_variant(out / "results.csv", out / "success_vs_variant.png")
    plot_relaxed_weights(trials, results, out / "relaxed_weights.png")
    spread = relaxed_spread_rows(trials, results)
    write_rows(out / "relaxed_spread.csv", spread, SPREAD_FIELDS)
    plot_relaxed_spread(spread, [t.variant for t in trials], out / "relaxed_spread.png")


JOBS: dict[str, Job] = {
    "train": Job(check_train, make_train_trials, run_trial, final_success, write_train_outputs,
                 "results.csv, final.csv, learning_curves.png, success_vs_variant.png (numeric variants), "
                 "relaxed_weights.png, relaxed_spread.csv/.png"),
    "offline": Job(sweep_offline.check_offline, sweep_offline.make_offline_trials, sweep_offline.run_offline_trial,
                   sweep_offline.trial_success, sweep_offline.write_offline_outputs,
                   "results.csv, success_vs_size.png, table.md", failure=sweep_offline.failed_trial, resumable=True,
                   keeps=sweep_offline.keeps_result),
}


def run_sweep(cfg: SweepConfig, address: str | None = None, setup: Callable[[], Any] | None = None,
              progress: bool = True) -> Path:
    """Run the grid on Ray (local unless ``address``), write CSVs and PNGs; returns the output folder."""
    job = JOBS[cfg.job]
    trials = job.make_trials(cfg)
    started = provenance.record("sweep", trials=len(trials), address=address)
    if address:
        check_address(address, cfg.connect_timeout_s)
    import ray

    init = {"address": address} if address else {"num_cpus": cfg.num_cpus}
    try:
        ray.init(**init, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    except ConnectionError as exc:
        raise SweepError(f"cannot connect to Ray at {address!r}: {exc}") from exc
    try:
        check_resources(ray.cluster_resources(), cfg)
        out = cfg.run_dir
        out.mkdir(parents=True, exist_ok=True)
        config.save(cfg, out / "sweep.yaml")
        results = _run_all(ray, cfg, job, trials, setup, progress)
    finally:
        ray.shutdown()
    provenance.append_record(out / "provenance.jsonl", started)
    job.write_outputs(out, trials, results)
    return out


def check_resources(have: dict[str, float], cfg: SweepConfig) -> None:
    """A trial that asks for more CPUs or GPUs than the whole cluster has would wait forever: refuse it."""
    for name, need in (("CPU", cfg.cpus_per_trial), ("GPU", cfg.gpus_per_trial)):
        if need > have.get(name, 0.0):
            raise SweepError(f"each trial asks for {need:g} {name} ({name.lower()}s_per_trial) but the Ray cluster has "
                             f"{have.get(name, 0.0):g}; lower {name.lower()}s_per_trial or add nodes with {name}s")


def _run_all(ray, cfg: SweepConfig, job: Job, trials: list[Trial], setup, progress: bool) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results = [_saved(cfg, job, t) for t in trials]
    remote = ray.remote(num_cpus=cfg.cpus_per_trial, num_gpus=cfg.gpus_per_trial)(job.run_trial)
    index = {remote.remote(t.job_config, setup): i for i, t in enumerate(trials) if results[i] is None}
    pending, kept = list(index), len(trials) - len(index)
    columns = (TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[last]}"), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(cfg.name, total=len(trials), completed=kept,
                            last=f"{kept} trials kept from an earlier run" if kept else "")
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = _result(ray, done[0], job, cfg, trials[i])
            if job.resumable:
                finished = [(t, r) for t, r in zip(trials, results, strict=True) if r is not None]
                job.write_outputs(cfg.run_dir, [t for t, _ in finished], [r for _, r in finished])
            bar.update(task, advance=1, last=f"{trials[i].label}: success {job.success(results[i]):.0%}")
    return results


def _saved(cfg: SweepConfig, job: Job, trial: Trial) -> dict[str, Any] | None:
    """The result an earlier run kept for ``trial``, if the job resumes and would keep that result now."""
    result = grid.saved_result(cfg.run_dir, trial) if job.resumable else None
    return result if result is not None and job.keeps(result) else None


def _result(ray, ref, job: Job, cfg: SweepConfig, trial: Trial) -> dict[str, Any]:
    """The trial's result, kept for a rerun when the job resumes and keeps it; a failed Ray task is not kept (a rerun
    tries it again), and stops the sweep unless the job turns it into a row."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as exc:
        if job.failure is None:
            raise
        return job.failure(exc)
    if job.resumable and job.keeps(result):
        grid.save_result(cfg.run_dir, trial, result)
    return result


CSV_FIELDS = ("family", "variant", "seed", "step", "success_rate", "return")


def write_results(out: Path, trials: list[Trial], results: list[dict[str, Any]]) -> None:
    """``results.csv`` (one row per evaluation) and ``final.csv`` (each trial's last evaluation and its seconds)."""
    rows, finals = [], []
    for trial, res in zip(trials, results, strict=True):
        head = {"family": trial.family, "variant": trial.variant, "seed": trial.seed}
        evals = [{**head, "step": ev["step"], "success_rate": ev["success_rate"], "return": ev["return"]}
                 for ev in res["evals"]]
        rows += evals
        finals.append({**evals[-1], "seconds": round(res["seconds"], 1)})
    write_rows(out / "results.csv", rows, CSV_FIELDS)
    write_rows(out / "final.csv", finals, (*CSV_FIELDS, "seconds"))


def read_results(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        return [{**row, "seed": int(row["seed"]), "step": int(row["step"]),
                 "success_rate": float(row["success_rate"]), "return": float(row["return"])}
                for row in csv.DictReader(fh)]




def curves(rows: list[dict[str, Any]], metric: str = "success_rate") -> dict[tuple[str, str], tuple]:
    """(variant, family) -> (steps, mean, half-width) over seeds, on the steps every seed evaluated."""
    out = {}
    for key in sorted({(r["variant"], r["family"]) for r in rows}):
        sel = [r for r in rows if (r["variant"], r["family"]) == key]
        seeds = sorted({r["seed"] for r in sel})
        by_seed = {s: {r["step"]: r[metric] for r in sel if r["seed"] == s} for s in seeds}
        steps = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        values = np.array([[by_seed[s][t] for t in steps] for s in seeds])
        mean, half = confidence_band(values)
        out[key] = (np.array(steps), mean, half)
    return out






def plot_learning_curves(csv_path: Path, png_path: Path, metric: str = "success_rate") -> None:
    plt = pyplot()
    data = curves(read_results(csv_path), metric)
    variants = sorted({v for v, _ in data})
    fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 3.8), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        lines = {family: curve for (v, family), curve in data.items() if v == variant}
        draw_curves(ax, lines, metric, f"variant: {variant}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def success_vs_variant(rows: list[dict[str, Any]], metric: str = "success_rate") -> dict[str, Curve]:
    """family -> (variants as numbers, mean, half-width) of the eval ``metric`` at each family's last common step per
    variant: success against breaking strength. Empty unless every variant is a number."""
    data = curves(rows, metric)
    if not data or not all(_is_number(v) for v, _ in data):
        return {}
    out = {}
    for family in sorted({f for _, f in data}):
        points = sorted((float(v), mean[-1], half[-1]) for (v, f), (_, mean, half) in data.items() if f == family)
        out[family] = tuple(np.array(column) for column in zip(*points, strict=True))
    return out


def plot_success_vs_variant(csv_path: Path, png_path: Path, metric: str = "success_rate") -> bool:
    """A line per family of the final eval ``metric`` against the variant with its 95% band, when the variants are
    numbers (breaking strengths); False, and nothing written, when they are not."""
    lines = success_vs_variant(read_results(csv_path), metric)
    if not lines:
        return False
    fig, ax = pyplot().subplots(figsize=(6, 4))
    plotting.draw_curves(ax, {family: (x, mean, mean - half, mean + half) for family, (x, mean, half) in lines.items()},
                         marker="o", markersize=4)
    ax.set_xlabel("breaking strength")
    ax.set_ylabel(f"final eval {metric.replace('_', ' ')} (mean, 95% CI)")
    if metric == "success_rate":
        ax.set_ylim(-0.05, 1.05)
    save_figure(fig, png_path)
    return True


SPREAD_FIELDS = ("family", "variant", "seed", "layer", "spread")


def relaxed_spread_rows(trials: list[Trial], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per relaxed trial and layer: its spread (0 = exactly equivariant): a relaxed group convolution's weights
    over the group, a relaxed steerable convolution's coefficients over the kernel positions."""
    return [{"family": t.family, "variant": t.variant, "seed": t.seed, "layer": row["layer"],
             "spread": round(row["spread"], 5)}
            for t, r in zip(trials, results, strict=True) for row in r["relaxed_weights"]]


def plot_relaxed_spread(rows: list[dict[str, Any]], variants: list[str], png_path: Path) -> None:
    """Each relaxed layer's spread against the variant, mean over seeds with its 95% band, a panel per relaxed
    family: where the sweep's variants are breaking strengths, which layers give up equivariance as the symmetry
    breaks."""
    plt = pyplot()
    order = list(dict.fromkeys(variants))
    numeric = all(_is_number(v) for v in order)
    x_of = {v: float(v) if numeric else i for i, v in enumerate(order)}
    families = sorted({r["family"] for r in rows}) or ["no relaxed-family trials in this sweep"]
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        lines = {}
        for layer in sorted({r["layer"] for r in rows if r["family"] == family}):
            sel = [r for r in rows if (r["family"], r["layer"]) == (family, layer)]
            present = [v for v in order if any(r["variant"] == v for r in sel)]
            stats = [confidence_band(np.array([r["spread"] for r in sel if r["variant"] == v])) for v in present]
            mean = np.array([m for m, _ in stats], dtype=float)
            half = np.array([h for _, h in stats], dtype=float)
            lines[f"layer {layer}"] = (np.array([x_of[v] for v in present]), mean, mean - half, mean + half)
        plotting.draw_curves(ax, lines, marker="o", markersize=4)
        ax.set_title(f"{family}: relaxed layers' spread")
        ax.set_xlabel("breaking strength" if numeric else "variant")
        ax.set_ylabel("spread (mean, 95% CI; 0 = equivariant)")
        if not numeric:
            ax.set_xticks(range(len(order)), order)
    save_figure(fig, png_path)
    plt.close(fig)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_relaxed_weights(trials: list[Trial], results: list[dict[str, Any]], png_path: Path) -> None:
    """Each relaxed trial's actor as a grid of w_l(h) per layer and bank against the group element h."""
    grids = {t.label: [row for row in r["relaxed_weights"] if "weights" in row]
             for t, r in zip(trials, results, strict=True)}
    panels = {label: rows for label, rows in grids.items() if rows}
    weight_grids(png_path, panels, empty="no relaxed-family trials in this sweep")
