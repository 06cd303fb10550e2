"""Policy packages: one ``.onnx`` file whose metadata carries the ``PolicySpec``; run with onnxruntime only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.specs import PolicySpec, SpecError, check_spec_version, mismatches

SPEC_KEY = "robot_stack.policy_spec"
INPUTS = ("heightmap", "gripper")
OUTPUT = "action"


class PackageError(SpecError):
    """A policy package that cannot be used on this robot; the message names every problem."""


class OnnxPolicy:
    """An exported actor behind onnxruntime: ``act(obs) -> float32[5]`` in [-1, 1]."""

    def __init__(self, session: Any, spec: PolicySpec, metadata: dict[str, str], path: str) -> None:
        self.session = session
        self.spec = spec
        self.metadata = metadata
        self.path = path
        shape = session.get_inputs()[0].shape
        self.batchable = not isinstance(shape[0], int)
        self._vector_names = [n for n in spec.observation.names if n != "heightmap"]

    def check(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.spec.observation.check(obs)

    def stack(self, observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Checked observations -> the two model inputs, batched in order."""
        vector_names = self._vector_names
        if len(observations) == 1:  # the usual case (one arm): views with a batch axis, no copies
            (o,) = observations
            heightmap = np.asarray(o["heightmap"], dtype=np.float32)[None]
            if len(vector_names) == 1:
                vector = np.asarray(o[vector_names[0]], dtype=np.float32).reshape(1, -1)
            else:
                vector = np.concatenate([np.ravel(o[n]) for n in vector_names]).astype(np.float32)[None]
            return {"heightmap": heightmap, "gripper": vector}
        heightmap = np.stack([o["heightmap"] for o in observations]).astype(np.float32, copy=False)
        vector = np.stack([np.concatenate([np.ravel(o[n]) for n in vector_names]) for o in observations])
        return {"heightmap": heightmap, "gripper": vector.astype(np.float32, copy=False)}

    def act_batch(self, observations: list[dict[str, np.ndarray]], checked: bool = False) -> np.ndarray:
        """float32[B, 5]; one onnxruntime call when the model has a dynamic batch axis.

        ``checked=True`` skips the spec check for observations that already passed ``ObservationSpec.check``.
        """
        checked = observations if checked else [self.check(o) for o in observations]
        if self.batchable or len(checked) == 1:
            return self._run(self.stack(checked))
        return np.concatenate([self._run(self.stack([o])) for o in checked])

    def act(self, obs: dict[str, np.ndarray], timeout: float | None = None) -> np.ndarray:
        """float32[5] for one observation (``timeout`` is accepted for parity with ``PolicyClient``)."""
        return self.act_batch([obs])[0]

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (action,) = self.session.run([OUTPUT], feeds)
        return np.asarray(action, dtype=np.float32).reshape(len(feeds["heightmap"]), self.spec.action.dim)

    def close(self) -> None:
        pass


def read_spec(path: str | Path) -> tuple[PolicySpec, dict[str, str]]:
    """The package's ``PolicySpec`` and all its metadata, without building an inference session."""
    import onnxruntime as ort

    session = _session(path, ort, threads=1)
    return _spec_from_session(session, path)


def _session(path: str | Path, ort: Any, threads: int) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy package {str(path)!r} does not exist")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for broken files
        raise PackageError(f"{path}: not a loadable ONNX model: {exc}") from exc


def _spec_from_session(session: Any, path: str | Path) -> tuple[PolicySpec, dict[str, str]]:
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if SPEC_KEY not in metadata:
        raise PackageError(f"{path}: metadata has no {SPEC_KEY!r} entry (keys: {sorted(metadata)}); "
                           "export it with `robot-stack export`")
    try:
        raw = json.loads(metadata[SPEC_KEY])
        check_version(raw.get("version"), f"policy package {path}")
        spec = PolicySpec.from_dict(raw)
    except PackageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: {SPEC_KEY} is not a valid policy spec: {exc}") from exc
    return spec, metadata


def check_version(version: Any, where: str) -> None:
    """``PackageError`` naming both versions when a policy was exported under another spec version."""
    try:
        check_spec_version(version, where, "export the policy again with this robot-stack (and retrain it if the "
                                           "observation changed)")
    except SpecError as exc:
        raise PackageError(str(exc)) from None


def _check_io(session: Any, spec: PolicySpec, path: str | Path) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    problems = []
    if tuple(inputs) != INPUTS:
        problems.append(f"inputs must be {list(INPUTS)}, got {list(inputs)}")
    else:
        want = {"heightmap": list(spec.observation["heightmap"].shape), "gripper": [spec.observation.vector_dim]}
        for name, dims in want.items():
            got = inputs[name][1:]
            if len(got) != len(dims) or any(isinstance(g, int) and g != d for g, d in zip(got, dims, strict=False)):
                problems.append(f"input {name!r} has shape {inputs[name]}, the spec needs [B, {dims}]")
    if OUTPUT not in outputs:
        problems.append(f"no output named {OUTPUT!r} (outputs: {outputs})")
    if problems:
        raise PackageError(f"{path}: " + "; ".join(problems))


def load_policy_package(path: str | Path, expected: PolicySpec | None = None, threads: int = 1) -> OnnxPolicy:
    """Load an exported policy; refuse it when its spec differs from ``expected``, naming every mismatch."""
    import onnxruntime as ort

    session = _session(path, ort, threads)
    spec, metadata = _spec_from_session(session, path)
    if expected is not None:
        diff = mismatches(expected, spec)
        if diff:
            raise PackageError(f"{path}: policy spec does not match the robot's: " + "; ".join(diff))
    _check_io(session, spec, path)
    return OnnxPolicy(session, spec, metadata, str(path))
