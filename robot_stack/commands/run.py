"""robot-stack run CONFIG: the real-time control loop (sim or UR arm, local or remote policy), recorded.

camera -> HeightmapProjector -> policy (local OnnxPolicy or remote PolicyClient) -> SafetyFilter -> arm,
at ``loop.rate_hz``. See launch/sim_robot.yaml and launch/real_ur.yaml, and docs/deploy.md."""

from __future__ import annotations

import argparse

HELP = "run the control loop: camera -> heightmap -> policy -> safety filter -> arm, recording episodes"


DESCRIPTION = HELP + """

Examples:
  robot-stack run sim_robot                                  # launch/sim_robot.yaml: the sim arm, a spawned server
  robot-stack run sim_robot loop.episodes=3 record.path=runs/mine.zarr
  robot-stack run real_ur arm.ur.host=192.168.1.10 policy.server=tcp://127.0.0.1:5555

Operator keys (when stdin is a terminal): s start an episode, x or space stop (arm holds), y mark success,
n mark failure, q quit. Without a terminal, episodes start on their own and keys are ignored.

With policy.spawn_server: true the policy server runs as a child process; everything it prints appears in
this command's output, each line prefixed "serve: ". It is stopped when the run ends, and stops by itself
if this process dies.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="launch file (e.g. launch/sim_robot.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. loop.episodes=3")


def run(args: argparse.Namespace) -> int:
    from robot_stack.config import load
    from robot_stack.jobs.run import RunConfig, run_config, sigterm_as_interrupt

    cfg = load(RunConfig, args.config, args.overrides)
    with sigterm_as_interrupt():
        return run_config(cfg)
