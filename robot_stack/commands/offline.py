"""robot-stack offline CONFIG --dataset PATH [--dataset PATH2 ...] [--init CHECKPOINT]: CQL / IQL / BC from
recorded episodes, evaluated in sim, saved as a checkpoint and exported to ONNX."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train CQL / IQL / BC from recorded episodes (zarr), evaluate in sim, export ONNX"


DESCRIPTION = HELP + """

Examples:
  robot-stack offline launch/offline_push.yaml --dataset data/push_expert.zarr
  robot-stack offline offline_lift --dataset a.zarr --dataset b.zarr algo=cql cql.alpha=5 steps=20000
  robot-stack offline offline_push --dataset d.zarr --init runs/train/push/checkpoint.pt   # fine-tune

With --init and eval_episodes > 0 the policy is also evaluated before any update, on the same eval
episodes, and both success rates are printed (summary.json: eval_before, eval).
The datasets are checked before training starts: an empty dataset, an observation spec that differs
from the task's, or NaN/inf anywhere is refused with a message naming the problem."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="launch file (e.g. launch/offline_push.yaml or offline_push)")
    parser.add_argument("--dataset", action="append", nargs="+", default=[], metavar="PATH",
                        help="zarr episode store(s); repeat to mix datasets (key=value words after it that are not "
                             "paths are read as overrides)")
    parser.add_argument("--init", nargs="+", metavar="CHECKPOINT", help="start from this checkpoint's weights")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo=cql cql.alpha=5 steps=1000")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config
    from robot_stack.jobs.offline import OfflineJob, run_job

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
    print(json.dumps({k: result[k] for k in ("out_dir", "eval_before", "eval", "train_seconds") if k in result},
                     indent=2))
    if "eval_before" in result:
        before, after = result["eval_before"]["success_rate"], result["eval"]["success_rate"]
        print(f"success before fine-tuning {before:.0%}, after {after:.0%} ({after - before:+.0%}) on the same "
              f"{result['eval']['episodes']} eval episodes")
    return 0


def split_dataset_words(words: list[str]) -> tuple[list[str], list[str]]:
    """argparse puts ``key=value`` words typed after ``--dataset`` into it: keep paths, return the rest."""
    datasets, overrides = [], []
    for word in words:
        is_override = "=" in word and not Path(word).exists() and "://" not in word
        (overrides if is_override else datasets).append(word)
    return datasets, overrides
