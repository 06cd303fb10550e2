"""robot-stack evaluate POLICY [POLICY ...]: trained policies under depth-camera noise and dropout, or with
--rotated-goals the world_goal ceiling test (thin wrapper over ``robot_stack.jobs.robustness`` and
``robot_stack.jobs.rotated_goals``)."""

from __future__ import annotations

import argparse

HELP = "evaluate trained policies in sim under depth noise and dropout at increasing levels; table, CSV + PNG"
DESCRIPTION = HELP + """

Each policy (a robot-stack train checkpoint.pt, or an exported .onnx package) runs on its task's fixed eval layouts
(those of its training seed, or --seed) with the sim depth camera's Gaussian noise at each --noise level (metres,
no dropout) and its pixel dropout at each --dropout level (fraction, no noise). Policies given together share one
plot: one line per policy, 95% Wilson bands. A checkpoint carries its task and env options; an ONNX package needs
--task and the env options it was trained with.

--rotated-goals, for push policies trained with the world_goal variant, replaces the noise levels: each eval
episode runs on to the horizon past success, and the table gives how often the cube passes the true goal (the
success rate), how often it ends in it, and how many of the four goals pad + g.offset (g in C4) it passes. An exactly
equivariant policy's success on the four turns of a layout is the share of those goals one of its paths passes, so
this is what bounds it (docs/sim.md, world_goal).

Examples:
  robot-stack evaluate runs/push_relaxed_s0/checkpoint.pt runs/push_exact_s0/checkpoint.pt --noise 0,0.005,0.01
  robot-stack evaluate runs/world_goal_exact/checkpoint.pt --rotated-goals --out docs/results/goals
  robot-stack evaluate push.onnx --task push env.view=gripper env.heightmap_size=64 --dropout 0,0.1 --episodes 20"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="+", metavar="POLICY | env.KEY=VALUE",
                        help="checkpoint.pt or .onnx files, and env options for the eval env (e.g. env.horizon=60)")
    parser.add_argument("--noise", default="0,0.0025,0.005,0.01",
                        help="Gaussian depth noise std levels in metres, comma-separated (default 0,0.0025,0.005,0.01)")
    parser.add_argument("--dropout", default="0,0.1",
                        help="pixel dropout fractions in [0, 1), comma-separated (default 0,0.1); '' for none")
    parser.add_argument("--episodes", type=int, default=50, help="eval episodes per policy and level (default 50)")
    parser.add_argument("--rotated-goals", action="store_true",
                        help="world_goal push policies: count the C4-turned goals the cube passes (no noise levels)")
    parser.add_argument("--task", help="the task (needed for an ONNX package; checks a checkpoint's)")
    parser.add_argument("--seed", type=int, help="the eval layouts of this training seed (default: the policy's)")
    parser.add_argument("--out", default="runs/robustness", help="path of the .csv and .png without the suffix "
                        "(default runs/robustness)")


def run(args: argparse.Namespace) -> int:
    from robot_stack.jobs import robustness as job

    overrides = [item for item in args.items if "=" in item]
    paths = [item for item in args.items if "=" not in item]
    if not paths:
        raise job.RobustnessError("give at least one policy (a checkpoint.pt or an .onnx file)")
    if args.rotated_goals:
        return run_rotated_goals(args, paths, overrides)
    levels = job.make_levels(job.parse_levels(args.noise, "--noise"),
                             job.parse_levels(args.dropout, "--dropout", below_one=True))
    job.check_episodes(args.episodes)
    subjects = job.load_subjects(paths, args.task, overrides, args.seed)
    print(f"{len(subjects)} policies x {len(levels)} levels x {args.episodes} episodes on {subjects[0].task}")
    print(job.table_header(), flush=True)
    rows = job.run(subjects, levels, args.episodes, lambda row: print(job.format_row(row), flush=True))
    print("wrote " + ", ".join(map(str, job.write_outputs(rows, args.out))))
    return 0


def run_rotated_goals(args: argparse.Namespace, paths: list[str], overrides: list[str]) -> int:
    from robot_stack.jobs import robustness, rotated_goals

    robustness.check_episodes(args.episodes)
    subjects = robustness.load_subjects(paths, args.task, overrides, args.seed)
    print(f"{len(subjects)} policies x {args.episodes} episodes, each to the horizon past success", flush=True)
    rows = []
    for subject in subjects:
        rows.append(rotated_goals.rotated_goals_row(subject, args.episodes))
        print(rotated_goals.format_rotated_goals(rows[-1:]).splitlines()[-1], flush=True)
    print(rotated_goals.format_rotated_goals(rows))
    print(f"wrote {robustness.write_csv(rows, args.out)}")
    return 0
