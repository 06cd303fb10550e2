"""robot-stack offline CONFIG --dataset PATH [--dataset PATH2 ...] [--init CHECKPOINT]: CQL / IQL / BC from
recorded episodes, evaluated in sim, saved as a checkpoint and exported to ONNX."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HELP = "train CQL / IQL / BC from recorded episodes (zarr), evaluate in sim, export ONNX"
DESCRIPTION = HELP + """

Examples:
  robot-stack offline launch/offline_push.yaml --dataset data/push_expert.zarr
  robot-stack offline offline_lift --dataset a.zarr --dataset b.zarr algo=cql cql.alpha=5 steps=20000
  robot-stack offline offline_push --dataset d.zarr --init runs/train/push/checkpoint.pt   # fine-tune

The datasets are checked before training starts: an empty dataset, an observation spec that differs
from the task's, or NaN/inf anywhere is refused with a message naming the problem."""

EVAL_SEED_OFFSET = 10_000  # evaluation episode i resets with env seed seed + EVAL_SEED_OFFSET + i


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
    init: str | None = None  # checkpoint to start from (fine-tuning)
    steps: int = 100_000  # gradient steps (the seed paper: 100k)
    batch_size: int = 64
    augment: bool | None = None  # rotate every batch by a random group element; None: on unless family is cnn
    seed: int = 0
    device: str = "auto"
    eval_episodes: int = 20
    out_dir: str = "runs/offline"
    name: str = ""  # run folder name; default <task>_<algo>_<family>_s<seed>
    log_every: int = 200
    progress: bool = True
    export: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="launch file (e.g. launch/offline_push.yaml or offline_push)")
    parser.add_argument("--dataset", action="append", nargs="+", default=[], metavar="PATH",
                        help="zarr episode store(s); repeat to mix datasets (key=value words after it that are not "
                             "paths are read as overrides)")
    parser.add_argument("--init", nargs="+", metavar="CHECKPOINT", help="start from this checkpoint's weights")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo=cql cql.alpha=5 steps=1000")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config

    datasets, overrides = split_dataset_words([w for group in args.dataset for w in group])
    inits, init_overrides = split_dataset_words(list(args.init or []))
    if len(inits) > 1:
        raise config.ConfigError(f"--init takes one checkpoint, got {inits}")
    overrides += init_overrides
    job = config.load(OfflineJob, args.config, list(args.overrides) + overrides)
    job.datasets = list(job.datasets) + datasets
    if inits:
        job.init = inits[0]
    result = run_job(job)
    print(json.dumps({k: result[k] for k in ("out_dir", "eval", "train_seconds")}, indent=2))
    return 0


def split_dataset_words(words: list[str]) -> tuple[list[str], list[str]]:
    """argparse puts ``key=value`` words typed after ``--dataset`` into it: keep paths, return the rest."""
    datasets, overrides = [], []
    for word in words:
        is_override = "=" in word and not Path(word).exists() and "://" not in word
        (overrides if is_override else datasets).append(word)
    return datasets, overrides


def run_job(job: OfflineJob) -> dict[str, Any]:
    """Check the data, train, evaluate, save and export; returns a summary (also written to summary.json)."""
    import numpy as np
    import torch

    from policies import offline
    from robot_stack import config, provenance

    if not job.datasets:
        raise config.ConfigError("no dataset: pass --dataset PATH (repeat to mix) or set datasets: in the config")
    env, spec = offline.make_eval_env(job.task, job.env, job.network)
    data = offline.load_datasets(job.datasets, spec)  # every check happens here, before training
    torch.manual_seed(job.seed)
    rng = np.random.default_rng(job.seed)
    device = offline.pick_device(job.device)
    algo_cfg = {"cql": job.cql, "iql": job.iql, "bc": job.bc}[job.algo]
    algo = offline.build_algorithm(job.algo, spec, job.network, algo_cfg, device)
    if job.init:
        offline.load_init(algo, job.init, spec)
    augment = job.augment if job.augment is not None else spec.family != "cnn"
    group = offline.Group.parse(spec.group) if augment else None
    stream = offline.batches(data, job.batch_size, rng, group, device)
    t0 = time.perf_counter()
    history = offline.train_loop(algo, stream, job.steps, job.log_every, job.progress)
    train_seconds = time.perf_counter() - t0
    result = offline.evaluate(offline.torch_policy(algo.actor, spec, device), env, job.eval_episodes,
                              job.seed + EVAL_SEED_OFFSET)
    out = Path(job.out_dir) / (job.name or f"{job.task}_{job.algo}_{spec.family}_s{job.seed}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"out_dir": str(out), "eval": result, "train_seconds": train_seconds, "transitions": len(data),
               "datasets": job.datasets, "history": history,
               # the algorithm's own config as built (defaults filled in, "1e-3" from the command line a float)
               "config": {**config.to_dict(job), job.algo: config.to_dict(algo.cfg)},
               "provenance": provenance.record("offline")}
    offline.save_run(algo, spec, out, summary, job.network, export=job.export)
    return summary
