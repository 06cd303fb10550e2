"""robot-stack bench AREA: a benchmark that prints a table and writes its figures as JSON."""

from __future__ import annotations

import argparse
import importlib

from robot_stack.benchmarks import AREAS

HELP = "run a benchmark: prints a table, writes JSON with figures and targets"
DESCRIPTION = (HELP + "\n\nAreas: " + ", ".join(AREAS) + ".\nEvery speed figure comes with a baseline "
               "measured in the same run; targets are the ones the area's issue names.\n\nExamples:\n"
               "  robot-stack bench sim --quick\n"
               "  robot-stack bench serve --json runs/bench_serve.json\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("area", choices=AREAS, help="what to benchmark")
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute on 2 CPU cores)")
    parser.add_argument("--json", metavar="FILE", help="write the figures and targets to FILE")
    parser.add_argument("extra", nargs="*", help="area-specific key=value options")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"robot_stack.benchmarks.{args.area}")
    report = module.run(quick=args.quick, options=args.extra)
    report.print_table()
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return 0
