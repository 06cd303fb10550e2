"""ONNX export (parity, equivariance of the exported exact actor, metadata) and checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from policies.checkpoint import build_from_checkpoint, load_into, save_checkpoint
from policies.export import export_actor, read_metadata, torch_action
from policies.networks import FAMILIES, NetworkConfig, NetworkError, build_actor, build_critic
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec
from robot_stack.symmetry import Group, act_on_action, act_on_image

SMALL = dict(widths=(2, 2), kernel_sizes=(3, 3), hidden=2)


def make_spec(size: int = 32, extra: dict | None = None) -> PolicySpec:
    hs = HeightmapSpec(size)
    return PolicySpec(ObservationSpec.create(hs, extra=extra), ActionSpec(), hs)


def inputs(spec: PolicySpec, n: int, seed: int):
    rng = np.random.default_rng(seed)
    s = spec.observation.heightmap_size
    hm = rng.random((n, 1, s, s), dtype=np.float32)
    hm[:, :, : s // 3, : s // 4] += 1.0
    return hm, rng.random((n, spec.observation.vector_dim), dtype=np.float32)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("group", ["C2", "C4", "C8", "D2", "D4"])
def test_onnx_matches_torch(tmp_path, family, group):
    torch.manual_seed(0)
    spec = make_spec()
    actor = build_actor(spec, NetworkConfig(family=family, group=group, **SMALL))
    path = export_actor(actor, actor.spec, tmp_path / "a.onnx", {"steps": 0})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):  # dynamic batch
        hm, vec = inputs(spec, n, n)
        got = session.run(["action"], {"heightmap": hm, "gripper": vec})[0]
        assert got.shape == (n, 5)
        assert np.abs(got - torch_action(actor, hm, vec)).max() <= 1e-4


@pytest.mark.parametrize("group", ["C4", "C8", "D4"])
def test_exported_exact_actor_rotates_its_action(tmp_path, group):
    torch.manual_seed(1)
    spec = make_spec()
    actor = build_actor(spec, NetworkConfig(family="exact", group=group, **SMALL))
    session = ort.InferenceSession(str(export_actor(actor, actor.spec, tmp_path / "a.onnx", {})),
                                   providers=["CPUExecutionProvider"])
    hm, vec = inputs(spec, 2, 7)
    base = session.run(["action"], {"heightmap": hm, "gripper": vec})[0]
    assert np.abs(base[:, :2]).max() > 1e-4
    for g in Group.parse(group).elements:
        if (4 * g.k) % g.n:
            continue  # 45-degree elements: the image rotation interpolates (docs/networks.md)
        moved = session.run(["action"], {"heightmap": act_on_image(g, hm), "gripper": vec})[0]
        np.testing.assert_allclose(moved, act_on_action(g, base), atol=1e-5)


def test_metadata_and_vector_fields(tmp_path):
    spec = make_spec(extra={"joint": 3})
    actor = build_actor(spec, NetworkConfig(family="relaxed", group="D4", **SMALL))
    path = export_actor(actor, actor.spec, tmp_path / "a.onnx", {"success_rate": 0.5})
    meta = read_metadata(path)
    # to_dict, not ==: PolicySpec.to_json sorts keys, so the field order does not survive the JSON (reported)
    assert PolicySpec.from_json(meta["robot_stack.policy_spec"]).to_dict() == actor.spec.to_dict()
    assert (meta["robot_stack.family"], meta["robot_stack.group"]) == ("relaxed", "D4")
    assert json.loads(meta["robot_stack.summary"]) == {"success_rate": 0.5}
    assert json.loads(meta["robot_stack.export_check"])["parity_max_abs"] <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["heightmap", "gripper"]
    assert session.get_inputs()[1].shape[1] == 5  # gripper (2) + joint (3), in spec order


def test_export_refuses_a_spec_that_does_not_match(tmp_path):
    actor = build_actor(make_spec(), NetworkConfig(family="cnn", group="C4", **SMALL))
    with pytest.raises(NetworkError, match="heightmap.size"):
        export_actor(actor, dataclasses.replace(make_spec(64), family="cnn", group="C4"), tmp_path / "a.onnx", {})
    with pytest.raises(NetworkError, match="family"):
        export_actor(actor, make_spec(), tmp_path / "a.onnx", {})


def test_checkpoint_round_trip_and_refusals(tmp_path):
    torch.manual_seed(2)
    spec = make_spec()
    cfg = NetworkConfig(family="relaxed", group="C4", **SMALL)
    actor, critic = build_actor(spec, cfg), build_critic(spec, cfg)
    with torch.no_grad():
        actor.encoder.relaxed_layers()[0].relaxed_weights[0, 0] += 0.3
    actor.eval()  # saving in eval mode must give the same keys as in train mode
    path = save_checkpoint(tmp_path / "c.pt", {"actor": actor, "critic": critic}, extra={"step": 7})
    hm, vec = (torch.from_numpy(x) for x in inputs(spec, 2, 3))
    again = build_from_checkpoint(path, "actor").eval()
    for a, b in zip(actor(hm, vec), again(hm, vec), strict=True):
        assert torch.equal(a, b)
    assert build_from_checkpoint(path, "critic").twin
    other = build_actor(spec, dataclasses.replace(cfg, family="exact"))
    with pytest.raises(NetworkError, match="holds a 'relaxed' C4 network, this one is 'exact' C4"):
        load_into(other, path, "actor")
    with pytest.raises(NetworkError, match="heightmap"):
        load_into(build_actor(make_spec(64), cfg), path, "actor")
    with pytest.raises(NetworkError, match="no module 'policy'"):
        load_into(build_actor(spec, cfg), path, "policy")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NetworkError, match="not a robot-stack checkpoint"):
        build_from_checkpoint(tmp_path / "bad.pt")
