"""The offline job behind ``robot-stack offline``: check the datasets, train CQL / IQL / BC, evaluate in sim, save
and export."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import sim
from policies.checkpoint import load_module_state, module_state, read_checkpoint, write_checkpoint
from policies.core import (
    Algorithm,
    Batch,
    actor_average,
    actor_lr_schedule,
    check_actor_average,
    check_lr_schedule,
    pick_device,
)
from policies.data import batches, load_datasets
from policies.export import export_actor
from policies.networks import NetworkConfig
from policies.registry import algorithm_config, build_algorithm
from robot_stack import config, provenance
from robot_stack.jobs.evaluation import evaluate, torch_policy
from robot_stack.specs import PolicySpec, SpecError, mismatches
from robot_stack.symmetry import Group


@dataclass
class OfflineJob:
    task: str = "push"  # sim task used for the observation spec and the evaluation (sim.TASKS)
    env: dict[str, Any] = field(default_factory=dict)  # options for sim.make_env
    algo: Literal["cql", "iql", "bc"] = "iql"
    network: dict[str, Any] = field(default_factory=dict)  # policies.networks.NetworkConfig (family, group, ...)
    cql: dict[str, Any] = field(default_factory=dict)  # policies.cql.CQLConfig
    iql: dict[str, Any] = field(default_factory=dict)  # policies.iql.IQLConfig
    bc: dict[str, Any] = field(default_factory=dict)  # policies.bc.BCConfig
    datasets: list[str] = field(default_factory=list)  # added to --dataset
    successes_only: bool = False  # train on the episodes recorded as successful only (filtered BC)
    init: str | None = None  # checkpoint to start from (fine-tuning)
    steps: int = 100_000  # gradient steps (the seed paper: 100k)
    actor_lr_schedule: str = "constant"  # constant | cosine: to 0 over the actor's updates (policies.core)
    # > 0: evaluate, save and export the moving average of the actor's weights with this decay (policies.core);
    # the last update's actor is evaluated too (summary "eval_last_iterate")
    actor_average: float = 0.0
    batch_size: int = 64
    augment: bool | None = None  # rotate every batch by a random group element; None: on unless all nets are cnn
    seed: int = 0
    device: str = "auto"
    eval_episodes: int = 20
    out_dir: str = "runs/offline"
    name: str = ""  # run folder name; default <task>_<algo>_<family>_s<seed>
    log_every: int = 200
    progress: bool = True
    export: bool = True

    def __post_init__(self) -> None:
        sim.env_config(self.task, self.env)
        net = config.build(NetworkConfig, dict(self.network), "network")
        if "critic_family" in self.network:
            self.network = {**self.network, "critic_family": net.critic_family}
        for name in ("cql", "iql", "bc"):
            algorithm_config(name, getattr(self, name))
        check_lr_schedule(self.actor_lr_schedule)
        check_actor_average(self.actor_average)


def run_job(job: OfflineJob) -> dict[str, Any]:
    """Check the data, train, evaluate, save and export; returns a summary (also written to summary.json)."""
    if not job.datasets:
        raise config.ConfigError("no dataset: pass --dataset PATH (repeat to mix) or set datasets: in the config")
    env = sim.make_env(job.task, **job.env)
    spec = sim.policy_spec(env, job.network.get("group", "C8"), job.network.get("family", "relaxed"))
    data = load_datasets(job.datasets, spec, job.successes_only)  # every check happens here, before training
    torch.manual_seed(job.seed)
    rng = np.random.default_rng(job.seed)
    device = pick_device(job.device)
    algo_cfg = {"cql": job.cql, "iql": job.iql, "bc": job.bc}[job.algo]
    algo = build_algorithm(job.algo, spec, job.network, algo_cfg, device)
    before = start_from(algo, job, env, spec, device) if job.init else None
    group = Group.parse(spec.group) if augments(job, spec) else None
    stream = batches(data, job.batch_size, rng, group, device)
    t0 = time.perf_counter()
    schedule = actor_lr_schedule(algo.actor_opt, job.actor_lr_schedule, job.steps,
                                 getattr(algo.cfg, "actor_warmup_updates", 0))
    average = actor_average(algo.actor, job.actor_average)
    history = train_loop(algo, stream, job.steps, job.log_every, job.progress, schedule=schedule, average=average)
    train_seconds = time.perf_counter() - t0
    last_iterate = None
    if average is not None:
        last_iterate = evaluate(torch_policy(algo.actor, spec, device), env, job.eval_episodes, job.seed)
        load_module_state(algo.actor, module_state(average.module))  # evaluated, saved and exported from here
    result = evaluate(torch_policy(algo.actor, spec, device), env, job.eval_episodes, job.seed)
    out = Path(job.out_dir) / (job.name or f"{job.task}_{job.algo}_{spec.family}_s{job.seed}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"out_dir": str(out), "eval": result, "train_seconds": train_seconds, "transitions": len(data),
               "datasets": job.datasets, "history": history,
               # the algorithm's own config as built (defaults filled in, "1e-3" from the command line a float)
               "config": {**config.to_dict(job), job.algo: config.to_dict(algo.cfg)},
               "provenance": provenance.record("offline")}
    if before is not None:
        summary["eval_before"] = before
    if last_iterate is not None:
        summary["eval_last_iterate"] = last_iterate
    save_run(algo, spec, out, summary, job.network, export=job.export)
    return summary


def start_from(algo: Algorithm, job: OfflineJob, env: Any, spec: PolicySpec, device: torch.device
               ) -> dict[str, float] | None:
    """Load ``job.init``; with evaluation asked, evaluate the policy before any update on the episodes the final
    evaluation uses, so that the fine-tuning gain is a paired difference."""
    load_init(algo, job.init, spec)
    if job.eval_episodes <= 0:
        return None
    return evaluate(torch_policy(algo.actor, spec, device), env, job.eval_episodes, job.seed)


def augments(job: OfflineJob, spec: PolicySpec) -> bool:
    """``job.augment``, or by default: rotate the batches unless actor and critic are both the plain cnn."""
    if job.augment is not None:
        return job.augment
    return {spec.family, job.network.get("critic_family") or spec.family} != {"cnn"}


def train_loop(algo: Algorithm, stream: Iterator[Batch], steps: int, log_every: int = 100,
               progress: bool = True, callback: Callable[[int, dict[str, float]], Any] | None = None,
               schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
               average: torch.optim.swa_utils.AveragedModel | None = None) -> list[dict[str, float]]:
    """Run ``steps`` gradient updates, stepping ``schedule`` and averaging the actor into ``average`` after each;
    returns the logged metrics (mean over each ``log_every`` window)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(type(algo).__name__, total=steps, info="")
        for step in range(1, steps + 1):
            metrics = algo.update(next(stream))
            if schedule is not None:
                schedule.step()
            if average is not None:
                average.update_parameters(algo.actor)
            window.append(metrics)
            if step % log_every == 0 or step == steps:
                mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                mean["step"] = step
                history.append(mean)
                window = []
                bar.update(task, info=" ".join(f"{k}={v:.3g}" for k, v in mean.items() if k != "step"))
                if callback is not None:
                    callback(step, mean)
            bar.advance(task)
    return history


def save_run(algo: Algorithm, spec: PolicySpec, out: Path, summary: dict[str, Any], network: dict[str, Any],
             export: bool = True) -> dict[str, str]:
    """``checkpoint.pt`` (the one checkpoint format: spec, network config, every module's weights),
    ``summary.json`` and ``policy.onnx``."""
    name = type(algo).__name__.lower()
    modules = {k: module_state(m) for k, m in algo.modules().items()}
    write_checkpoint(out / "checkpoint.pt", spec, network, modules, {"algo": name, "eval": summary.get("eval", {})})
    paths = {"checkpoint": str(out / "checkpoint.pt"), "summary": str(out / "summary.json")}
    if export:
        algo.actor.eval()
        export_actor(algo.actor, spec, out / "policy.onnx", {"algo": name, **summary.get("eval", {})})
        algo.actor.train()
        paths["onnx"] = str(out / "policy.onnx")
    summary["files"] = paths
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return paths


def load_init(algo: Algorithm, path: str | Path, spec: PolicySpec) -> list[str]:
    """Start from a checkpoint's weights (offline or online-trained): the actor always, the twin critic (and the
    target critic) and the value network when the checkpoint has matching ones. Refuses a checkpoint for another
    spec. Returns what loaded."""
    ckpt = read_checkpoint(path, SpecError)
    diffs = mismatches(ckpt.spec.to_dict(), spec.to_dict())
    if diffs:
        raise SpecError(f"{path}: checkpoint spec differs from this job's: " + "; ".join(diffs))
    load_module_state(algo.actor, ckpt.module("actor", path))
    loaded = ["actor"]
    modules = algo.modules()
    critic = ckpt.modules.get("critic")
    if critic is not None and "critic" in modules and all(key.startswith("heads.") for key in critic):
        load_module_state(modules["critic"], critic)
        load_module_state(modules["target_critic"], critic)
        loaded.append("critic")
    if "value" in modules and "value" in ckpt.modules:
        load_module_state(modules["value"], ckpt.modules["value"])
        loaded.append("value")
    return loaded
