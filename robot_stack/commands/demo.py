"""robot-stack demo: the stack teaching the sim robot a task, end to end, on a CPU.

expert demos -> BC pre-training -> online relaxed-equivariant SAC (live progress, periodic evaluation) -> export ONNX
-> serve it -> run the sim robot through the server with the recorder on -> fine-tune offline with IQL on the
recorded episodes -> report (table + PNGs) in an output folder."""

from __future__ import annotations

import argparse

HELP = "the stack end to end in sim: demos, online SAC, export, serve, run, record, fine-tune, report"


DESCRIPTION = HELP + """

Every number in the report comes from this run. Examples:
  robot-stack demo                      # push; its measured wall time on 2 CPU cores: docs/results/demo.md
  robot-stack demo --task lift          # the same on lift
  robot-stack demo --quick              # a few minutes: small sizes, a smoke test of every stage
  robot-stack demo out=runs/my_demo env_steps=5000 train.sac.lr=3e-4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="push", help="push (default) or lift")
    parser.add_argument("--quick", action="store_true", help="a short smoke version (few episodes and steps)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of DemoConfig, e.g. env_steps=5000")


def run(args: argparse.Namespace) -> int:
    from robot_stack.jobs.demo import Demo, demo_config

    report = Demo(demo_config(args.task, args.quick, args.overrides)).run()
    return 0 if report["after"]["success_rate"] is not None else 1
