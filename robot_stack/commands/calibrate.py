"""robot-stack calibrate CONFIG: fit the table plane in depth frames and compare it with the configured pose."""

from __future__ import annotations

import argparse

HELP = "check the camera pose: fit the table plane, report its height and tilt against the configured extrinsics"


DESCRIPTION = HELP + """

Examples:
  robot-stack calibrate calibrate                                  # launch/calibrate.yaml, live camera
  robot-stack calibrate calibrate camera.recording=table.db3       # a recording instead
  robot-stack calibrate calibrate frames=10 tilt_tolerance_deg=0.5

The table must be the largest flat surface in the workspace footprint. Exit status 0 when the fitted
table lies within the tolerances of the configured pose, 1 when it does not (the report says by how much)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="calibrate", help="launch file (default launch/calibrate.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. camera.recording=table.db3")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config
    from robot_stack.jobs.calibrate import CalibrateJob, calibrate, print_report

    job = config.load(CalibrateJob, args.config, args.overrides)
    result = calibrate(job)
    print_report(result, job)
    return 0 if result.ok(job) else 1
