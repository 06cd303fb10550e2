"""robot-stack sweep CONFIG [--address ADDR] [key=value ...]: a grid of families x seeds x variants on Ray."""

from __future__ import annotations

import argparse

HELP = "run a grid of network families x seeds x task variants through Ray; CSV + PNG results"
DESCRIPTION = (HELP + "\n\nExamples:\n  robot-stack sweep launch/sweep_push.yaml\n"
               "  robot-stack sweep sweep_push --address 10.0.0.5:6379 seeds=[0,1,2,3,4]\n\n"
               "Without --address a local Ray is started. Writes results.csv, final.csv, learning_curves.png\n"
               "(95% confidence bands over seeds) and relaxed_weights.png to the sweep's out_dir.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a name in launch/ (e.g. sweep_push)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="sweep config overrides")
    parser.add_argument("--address", help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto)")


def run(args: argparse.Namespace) -> int:
    from policies.sweep import SweepConfig, run_sweep
    from robot_stack import config

    cfg = config.load(SweepConfig, args.config, args.overrides)
    out = run_sweep(cfg, address=args.address)
    print(f"sweep results in {out}: results.csv, final.csv, learning_curves.png, relaxed_weights.png")
    return 0
