"""robot-stack data info|validate|view|merge|reproject: inspect, check, render, combine, re-project stores."""

from __future__ import annotations

import argparse

from robot_stack.specs import VIEWS

HELP = "inspect and repair recorded datasets: info, validate, view, merge, reproject"


DESCRIPTION = HELP + """

Examples:
  robot-stack data info runs/lift.zarr
  robot-stack data validate runs/lift.zarr            # exit 1 and one line per inconsistency
  robot-stack data validate runs/lift.zarr --repair   # truncate what an interrupted recording left
  robot-stack data view runs/lift.zarr --episode 3 --out ep3.gif   # .gif, .mp4 (needs imageio-ffmpeg) or .png strip
  robot-stack data merge all.zarr runs/a.zarr runs/b.zarr
  robot-stack data reproject runs/real.zarr runs/real_gripper.zarr --view gripper   # needs raw depth + arm state"""


ACTIONS = ("info", "validate", "view", "merge", "reproject")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("path", help="the episode store (merge: the output store; reproject: the input store)")
    parser.add_argument("sources", nargs="*", help="merge: the stores to append to PATH, in order; reproject: OUT")
    parser.add_argument("--episode", type=int, default=0, help="view: which episode")
    parser.add_argument("--out", help="view: output file (.gif, .mp4 or .png); default episode<N>.gif")
    parser.add_argument("--fps", type=float, default=10.0, help="view: frames per second")
    parser.add_argument("--every", type=int, default=1, help="view: draw every k-th step")
    parser.add_argument("--scale", type=int, default=4, help="view: pixels per heightmap cell")
    parser.add_argument("--repair", action="store_true", help="validate: truncate uncommitted leftovers first")
    parser.add_argument("--view", choices=VIEWS, help="reproject: the new view (default: the same)")
    parser.add_argument("--size", type=int, help="reproject: the new heightmap size (default: the same)")


def run(args: argparse.Namespace) -> int:
    if args.action == "reproject":
        return reproject(args)
    from robot_stack.jobs import data

    return data.ACTIONS[args.action](args)


def reproject(args: argparse.Namespace) -> int:
    from robot_stack.recorder.reproject import reproject as reproject_store

    if len(args.sources) != 1:
        raise SystemExit("usage: robot-stack data reproject IN OUT [--view gripper|workspace] [--size N]")
    done = reproject_store(args.path, args.sources[0], view=args.view, size=args.size)
    print(f"re-projected {done['episodes']} episodes ({done['steps']} steps) into {done['out']}: "
          f"{done['heightmap']['view']} view, {done['heightmap']['size']} px, {done['heightmap']['extent']:.3f} m")
    return 0
