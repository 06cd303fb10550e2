"""robot-stack collect CONFIG: record scripted-expert or ONNX-policy episodes in sim to a zarr store."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robot_stack.jobs.collect import CollectJob

HELP = "record scripted-expert or policy episodes in sim into a zarr episode store"


DESCRIPTION = HELP + """

Examples:
  robot-stack collect collect_lift                               # launch/collect_lift.yaml
  robot-stack collect collect_push episodes=50 noise=0.2 out=runs/push.zarr
  robot-stack collect collect_lift policy=runs/lift.onnx policy_id=lift-relaxed policy_version=3
  robot-stack collect collect_push policy=runs/push.onnx label=expert   # DAgger: the expert labels the policy's states
  robot-stack collect collect_offline task=door      # runs/datasets/door_{100,300,1000,5000}.zarr + quality
  robot-stack collect collect_offline task=push sizes=[100] sim.heightmap_size=32 out=runs/d/{task}_{transitions}.zarr

Episode i is reset with seed + i; the seed, the sim config and the initial layout go into the
episode's metadata so that 'robot-stack replay' can reset identically.

noise: one std or a list; with a list, episode i uses noise[i % len] (mixed-quality data), and
each episode's metadata holds its own level. transitions: N > 0 records until the store holds
exactly N transitions as EpisodeDataset counts them ('episodes' is then ignored): a step pairs with
the next one of its episode, and an episode's last step counts only if it is terminal. The last
episode is cut short to land on N (its metadata has cut: true); the store must be new.

sizes: [N1, N2, ...] records one store per size, each as with transitions: N (out names
{transitions}); an existing store of exactly that size and the same settings is kept, one of the
same settings that a stopped run left short is recorded again, any other is refused. Each
store's quality (transitions, episodes, success share, mean return, successes per noise std) is
printed and written beside the stores as <task>_datasets.md and .json. Episode i of every store
is the same, so a smaller store holds the first episodes of a larger one."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file or a name in launch/ (e.g. collect_lift)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. episodes=50 sim.variant=tilt)")


def run(args: argparse.Namespace) -> int:
    from robot_stack.config import load
    from robot_stack.jobs.collect import CollectJob, collect

    job = load(CollectJob, args.config, args.overrides)
    if job.sizes:
        return make_datasets(job)
    summary = collect(job)
    print(f"recorded {summary['committed']} episodes ({summary['steps']} steps, {summary['transitions']} "
          f"transitions, success {summary['success_rate']:.0%}) into {summary['out']}")
    return 0


def make_datasets(job: CollectJob) -> int:
    from robot_stack.jobs import offline_data

    made = offline_data.make_datasets(job)
    print(offline_data.quality_table(made["rows"]), end="")
    print(f"quality: {made['files']['md']}, {made['files']['json']}")
    return 0
