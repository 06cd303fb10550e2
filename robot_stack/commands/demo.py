"""robot-stack demo: the whole stack on its embedded defaults, in sim, on a laptop.

collect expert episodes -> train a relaxed-equivariant policy (offline BC) -> export ONNX -> serve it ->
run the sim robot through the server with the recorder on -> fine-tune offline with IQL on the recorded
episodes -> report (table + PNGs) in an output folder."""

from __future__ import annotations

import argparse

HELP = "the whole stack end to end in sim: collect, train, export, serve, run, record, fine-tune, report"


DESCRIPTION = HELP + """

Every number in the report comes from this run. Examples:
  robot-stack demo                      # about 5-10 minutes on 2 CPU cores
  robot-stack demo --quick              # a 2-3 minute smoke version (used by the tests)
  robot-stack demo out=runs/my_demo train_steps=1500
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short smoke version (few episodes and steps)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of DemoConfig, e.g. train_steps=1500")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config
    from robot_stack.jobs.demo import QUICK, Demo, DemoConfig

    cfg = config.build(DemoConfig, config.apply_overrides(QUICK if args.quick else {}, args.overrides))
    report = Demo(cfg).run()
    return 0 if report["after"]["success_rate"] is not None else 1
