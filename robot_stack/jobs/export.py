"""The export job: a trained checkpoint's actor to one ONNX policy package, re-opened with onnxruntime exactly as the
robot will open it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.checkpoint import load_actor
from policies.export import export_actor
from robot_stack.runtime import load_policy_package


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Any:
    """Write ``out`` from ``checkpoint`` (a ``robot-stack train`` or ``offline`` checkpoint); the export runs the
    onnx checker, torch parity and equivariance checks. Returns the loaded ``OnnxPolicy``."""
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    actor, spec, extra = load_actor(checkpoint)
    summary = {"checkpoint": str(checkpoint), **{k: v for k, v in extra.items() if _plain(v)}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_actor(actor, spec, out, summary)
    return load_policy_package(out, expected=spec)
