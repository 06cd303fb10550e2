"""robot-stack replay PATH --episode N: re-execute a recorded sim episode and report the divergence."""

from __future__ import annotations

import argparse

HELP = "re-execute a recorded episode's actions in sim from its seed and layout; report the divergence"


DESCRIPTION = HELP + """

Examples:
  robot-stack replay runs/collect_lift.zarr --episode 3
  robot-stack replay runs/collect_lift.zarr --episode 3 --tolerance 1e-3

Needs an episode recorded by 'robot-stack collect' (its metadata holds the task, the sim config,
the reset seed and the initial layout). Exit status 0 when every step's observation and reward
match within --tolerance, 1 when they do not."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the episode store")
    parser.add_argument("--episode", type=int, required=True, help="which episode")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted absolute difference")


def run(args: argparse.Namespace) -> int:
    from robot_stack.jobs.replay import replay_episode

    report = replay_episode(args.path, args.episode)
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    ok = report["max_divergence"] <= args.tolerance
    print(f"episode {args.episode}: {'reproduced' if ok else 'DIVERGED'} (max divergence "
          f"{report['max_divergence']:.3g}, tolerance {args.tolerance:g})")
    return 0 if ok else 1
