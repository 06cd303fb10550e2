"""robot-stack export CHECKPOINT --out FILE.onnx: a policy package for the robot.

Thin: ``robot_stack.jobs.export`` reads the checkpoint, exports it (with the onnx checker, torch parity and
equivariance checks) and re-opens the written file with onnxruntime exactly as the robot will; this prints its spec.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a trained checkpoint's actor to one ONNX policy package"
DESCRIPTION = HELP + """

Examples:
  robot-stack export runs/toy_reach_relaxed_s0/checkpoint.pt --out runs/policy.onnx
  robot-stack export runs/offline/push_iql_relaxed_s0/checkpoint.pt --out push.onnx"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (from robot-stack train / offline)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    from robot_stack.jobs.export import export_checkpoint

    policy = export_checkpoint(args.checkpoint, args.out)
    out = Path(args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): group {policy.spec.group}, family "
          f"{policy.spec.family}, heightmap {policy.spec.heightmap.size} px, "
          f"inputs {[i.name for i in policy.session.get_inputs()]}")
    return 0
