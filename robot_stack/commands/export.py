"""robot-stack export CHECKPOINT --out FILE.onnx: a policy package for the robot.

Thin: the checkpoint is read by ``policies`` and exported (with its onnx checker, torch parity and
equivariance checks) by ``policies.export.export_actor``; this command then re-opens the written file
with onnxruntime exactly as the robot will (``load_policy_package``) and prints its spec.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a trained checkpoint's actor to one ONNX policy package"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (from robot-stack train / offline)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")


def _load_actor(checkpoint: str):
    """(actor, PolicySpec, training summary) from a train, offline or ``policies.checkpoint`` checkpoint."""
    from policies.checkpoint import load_actor

    actor, spec, extra = load_actor(checkpoint)
    summary = {"checkpoint": str(checkpoint), **{k: v for k, v in extra.items() if _plain(v)}}
    return actor, spec, summary


def _plain(value) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def run(args: argparse.Namespace) -> int:
    from policies.export import export_actor
    from robot_stack.runtime import load_policy_package

    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    actor, spec, summary = _load_actor(args.checkpoint)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_actor(actor, spec, out, summary)  # runs the onnx checker, torch parity and equivariance checks
    policy = load_policy_package(out, expected=spec)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): group {policy.spec.group}, family "
          f"{policy.spec.family}, heightmap {policy.spec.heightmap.size} px, "
          f"inputs {[i.name for i in policy.session.get_inputs()]}")
    return 0
