"""robot-stack sweep CONFIG [--address ADDR] [key=value ...]: a grid of families x seeds x variants (or, with
job: offline, algos x families x datasets x seeds) on Ray."""

from __future__ import annotations

import argparse

HELP = "run a grid of network families x seeds x task variants (or offline algos x datasets) on Ray; CSV + PNG"
DESCRIPTION = HELP + """

Examples:
  robot-stack sweep launch/sweep_push.yaml
  robot-stack sweep sweep_push --address 10.0.0.5:6379 seeds=[0,1,2,3,4]
  robot-stack sweep sweep_offline_lift                       # CQL/IQL/BC x families x lift_{100..5000}.zarr
  robot-stack sweep sweep_offline_toy overrides.steps=50 out_dir=runs/smoke

Sweep file keys: name, job (train | offline), base (the launch file each trial starts from),
overrides (nested keys applied to base), families, seeds, out_dir, num_cpus (local Ray),
cpus_per_trial, gpus_per_trial, connect_timeout_s; job: train also variants, variant_key;
job: offline also algos (cql, iql, bc) and datasets (zarr paths, each labelled by its transition
count, or {name: N, path: P}); an offline family may be ACTOR+CRITIC (e.g. exact+cnn_aug). Datasets
(empty, spec version, specs, NaN/inf) and every trial's config are checked before Ray starts.

Without --address a local Ray is started. job: train writes results.csv, final.csv,
learning_curves.png (95% confidence bands over seeds) and relaxed_weights.png to the sweep's
out_dir; job: offline writes results.csv (one row per trial; a trial that fails is a row with its
error), success_vs_size.png (mean over seeds, 95% band, random policy dashed) and table.md, after
every finished trial, and keeps each trial's result: run a stopped offline sweep again to resume."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a name in launch/ (e.g. sweep_push)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="sweep config overrides")
    parser.add_argument("--address", help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto)")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config
    from robot_stack.jobs.sweep import JOBS, SweepConfig, run_sweep

    cfg = config.load(SweepConfig, args.config, args.overrides)
    out = run_sweep(cfg, address=args.address)
    print(f"sweep results in {out}: {JOBS[cfg.job].outputs}")
    return 0
