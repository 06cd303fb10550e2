"""Small stand-in policy packages built directly with ``onnx.helper`` (needs the ``onnx`` package).

Used by tests and ``robot-stack bench serve`` when no trained checkpoint is at hand: same inputs, output
and metadata as ``policies.export.export_actor`` produces, with random weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_stack.runtime.package import SPEC_KEY
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec


def default_spec(size: int = 64, group: str = "C8") -> PolicySpec:
    hm = HeightmapSpec(size=size)
    return PolicySpec(ObservationSpec.create(hm), ActionSpec(), hm, group=group, family="synthetic")


def make_package(path: str | Path, spec: PolicySpec, kind: str = "conv", seed: int = 0,
                 extra_metadata: dict[str, str] | None = None) -> Path:
    """Write an ONNX policy: ``linear`` (mean height + gripper -> Gemm -> tanh) or ``conv`` (2 strided convs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c, s = spec.observation.heightmap_channels, spec.observation.heightmap_size
    k = spec.observation.vector_dim
    inits, nodes = [], []

    def weight(name: str, shape: tuple[int, ...], scale: float) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    if kind == "conv":
        nodes += [helper.make_node("Conv", ["heightmap", weight("w1", (8, c, 3, 3), 0.5), weight("b1", (8,), 0.1)],
                                   ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c1"], ["r1"]),
                  helper.make_node("Conv", ["r1", weight("w2", (16, 8, 3, 3), 0.2), weight("b2", (16,), 0.1)],
                                   ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c2"], ["r2"]),
                  helper.make_node("GlobalAveragePool", ["r2"], ["pool"])]
        feat = 16
    elif kind == "linear":
        nodes.append(helper.make_node("ReduceMean", ["heightmap"], ["pool"], axes=[2, 3], keepdims=1))
        feat = c
    else:
        raise ValueError(f"kind must be 'conv' or 'linear', got {kind!r}")
    nodes += [helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
              helper.make_node("Concat", ["flat", "gripper"], ["feat"], axis=1),
              helper.make_node("Gemm", ["feat", weight("wo", (feat + k, spec.action.dim), 1.0),
                                        weight("bo", (spec.action.dim,), 0.3)], ["mean"]),
              helper.make_node("Tanh", ["mean"], ["action"])]
    graph = helper.make_graph(
        nodes, "synthetic_actor",
        [helper.make_tensor_value_info("heightmap", TensorProto.FLOAT, ["B", c, s, s]),
         helper.make_tensor_value_info("gripper", TensorProto.FLOAT, ["B", k])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", spec.action.dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="robot-stack")
    model.ir_version = 8
    meta = {SPEC_KEY: spec.to_json(), **(extra_metadata or {})}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
