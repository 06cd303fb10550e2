"""robot-stack data info|validate|view|merge|reproject|symmetry|symmetry-gap: inspect, check, render, combine,
re-project stores; how symmetric a store's task is; the symmetry gaps of a sim task's variants."""

from __future__ import annotations

import argparse

from robot_stack.specs import VIEWS

HELP = "inspect and repair recorded datasets: info, validate, view, merge, reproject, symmetry, symmetry-gap"


DESCRIPTION = HELP + """

Examples:
  robot-stack data info runs/lift.zarr
  robot-stack data validate runs/lift.zarr            # exit 1 and one line per inconsistency
  robot-stack data validate runs/lift.zarr --repair   # truncate what an interrupted recording left
  robot-stack data view runs/lift.zarr --episode 3 --out ep3.gif   # .gif, .mp4 (needs imageio-ffmpeg) or .png strip
  robot-stack data merge all.zarr runs/a.zarr runs/b.zarr
  robot-stack data reproject runs/real.zarr runs/real_gripper.zarr --view gripper   # needs raw depth + arm state
  robot-stack data symmetry runs/real.zarr --out symmetry.png     # exact or relaxed networks for this cell?
  robot-stack data symmetry-gap push --variants world_goal,wall --strengths 0,0.5,1 --out runs/gaps_push"""


ACTIONS = ("info", "validate", "view", "merge", "reproject", "symmetry", "symmetry-gap")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("path", help="the episode store (merge: the output store; reproject: the input store; "
                        "symmetry-gap: the sim task, e.g. push)")
    parser.add_argument("sources", nargs="*", help="merge: the stores to append to PATH, in order; reproject: OUT")
    parser.add_argument("--episode", type=int, default=0, help="view: which episode")
    parser.add_argument("--out", help="view: output file (.gif, .mp4 or .png), default episode<N>.gif; symmetry: "
                        "the PNG, default symmetry.png; symmetry-gap: path of the .json and .csv without the suffix, "
                        "default runs/symmetry_gap_<task>")
    parser.add_argument("--fps", type=float, default=10.0, help="view: frames per second")
    parser.add_argument("--every", type=int, default=1, help="view: draw every k-th step")
    parser.add_argument("--scale", type=int, default=4, help="view: pixels per heightmap cell")
    parser.add_argument("--repair", action="store_true", help="validate: truncate uncommitted leftovers first")
    parser.add_argument("--view", choices=VIEWS, help="reproject: the new view (default: the same)")
    parser.add_argument("--size", type=int, help="reproject: the new heightmap size (default: the same)")
    sym = parser.add_argument_group("symmetry and symmetry-gap")
    sym.add_argument("--group", default="C4", help="the symmetry group (C4, C8, D4, ...); default C4")
    sym.add_argument("--seed", type=int, default=0, help="split, network and layout seed")
    # symmetry's fit: None keeps robot_stack.jobs.symmetry.FitOptions' default
    sym.add_argument("--updates", type=int, help="symmetry: BC updates per family (300)")
    sym.add_argument("--batch", type=int, help="symmetry: BC batch size (32)")
    sym.add_argument("--lr", type=float, help="symmetry: BC learning rate (1e-3)")
    sym.add_argument("--val-fraction", type=float, help="symmetry: share of episodes held out (0.25)")
    sym.add_argument("--threshold", type=float,
                     help="symmetry: relative held-out gain of relaxed over exact that recommends relaxed (0.5)")
    sym.add_argument("--widths", help="symmetry: regular fields per conv block (4,8,8)")
    sym.add_argument("--json", help="symmetry: also write the report here")
    sym.add_argument("--variants", help="symmetry-gap: comma-separated variants (default: all)")
    sym.add_argument("--strengths", default="0,0.5,1", help="symmetry-gap: comma-separated strengths in [0, 1]")
    sym.add_argument("--layouts", type=int, default=3, help="symmetry-gap: layouts for the environment gap")
    sym.add_argument("--episodes", type=int, default=10, help="symmetry-gap: expert episodes per setting")


def run(args: argparse.Namespace) -> int:
    if args.action == "reproject":
        return reproject(args)
    if args.action == "symmetry":
        return symmetry(args)
    if args.action == "symmetry-gap":
        return symmetry_gap(args)
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


def symmetry(args: argparse.Namespace) -> int:
    import json

    from robot_stack.config import ConfigError
    from robot_stack.jobs import symmetry as job

    given = {"group": args.group, "seed": args.seed, "updates": args.updates, "batch_size": args.batch,
             "lr": args.lr, "val_fraction": args.val_fraction, "threshold": args.threshold}
    if args.widths:
        try:
            given["widths"] = tuple(int(w) for w in args.widths.split(","))
        except ValueError as exc:
            raise ConfigError(f"--widths: {args.widths!r} must be integers separated by commas, e.g. 4,8,8") from exc
    opts = job.FitOptions(**{k: v for k, v in given.items() if v is not None})
    report = job.store_symmetry(args.path, opts)
    print(job.format_store_report(report))
    print(f"wrote {job.plot_store_symmetry(report, args.out or 'symmetry.png')}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


def symmetry_gap(args: argparse.Namespace) -> int:
    from robot_stack.jobs import symmetry as job

    variants, strengths = job.parse_variants(args.variants, args.path), job.parse_strengths(args.strengths)
    rows = job.gap_rows(args.path, variants, strengths, args.layouts, args.episodes, args.seed, args.group)
    print(job.format_gap_table(rows))
    paths = job.write_gap_table(rows, args.out or f"runs/symmetry_gap_{args.path}")
    print("wrote " + ", ".join(map(str, paths)))
    return 0
