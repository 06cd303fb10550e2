"""The position-aware ``valid`` end on the 2-channel gripper-centred heightmap: shapes, equivariance, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.export import export_actor
from policies.networks import NetworkConfig, NetworkError, build_actor, build_critic
from policies.networks.diagnostics import equivariance_error
from policies.networks.groups import transform_actions, transform_images
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec
from robot_stack.symmetry import Group

SIZE = 32
SMALL = dict(widths=(2, 3, 3), kernel_sizes=(5, 3, 3), hidden=3)  # 32 -> 16 -> 8: an 8x8 kernel ends it
FAMILIES = ["relaxed", "relaxed_steerable", "exact", "cnn", "cnn_aug"]


def gripper_spec(size: int = SIZE) -> PolicySpec:
    hs = HeightmapSpec(size, view="gripper")
    return PolicySpec(ObservationSpec.create(hs), ActionSpec(), hs)


def batch(seed: int, n: int = 3, size: int = SIZE):
    g = torch.Generator().manual_seed(seed)
    hm = torch.rand(n, 2, size, size, generator=g) * 0.1 - 0.15
    hm[:, 0, : size // 3, : size // 4] += 0.1  # an off-centre block: no symmetry of its own
    hm[:, 1] = torch.rand(n, 1, 1, generator=g)  # the tiled opening
    return hm, torch.rand(n, 2, generator=g), torch.rand(n, 5, generator=g) * 2 - 1


def nets(family: str, group: str, end: str = "valid", size: int = SIZE):
    torch.manual_seed(0)
    cfg = NetworkConfig(family=family, group=group, end=end, **SMALL)
    return build_actor(gripper_spec(size), cfg), build_critic(gripper_spec(size), cfg)


def test_config_end_is_checked_and_old_configs_load_pooled():
    assert NetworkConfig().end == "pool" and NetworkConfig(end="valid").to_dict()["end"] == "valid"
    legacy = {k: v for k, v in NetworkConfig().to_dict().items() if k != "end"}
    assert NetworkConfig.from_dict(legacy).end == "pool"
    with pytest.raises(NetworkError, match="unknown end"):
        NetworkConfig(end="flatten")
    assert NetworkConfig(**SMALL).final_size(SIZE) == 8 and NetworkConfig().final_size(64) == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_takes_the_two_channel_map_with_the_valid_end(family):
    actor, critic = nets(family, "C4")
    hm, vec, act = batch(1)
    mean, log_std = actor(hm, vec)
    q1, q2 = critic(hm, vec, act)
    assert mean.shape == (3, 5) and log_std.shape == (3, 5) and q1.shape == (3, 1)
    assert actor.encoder.out_dim == (3 * 4)  # widths[-1] regular C4 fields, or as many CNN channels
    with pytest.raises(NetworkError, match=r"\[B, 2, 32, 32\]"):
        actor(hm[:, :1], vec)


@pytest.mark.parametrize("family", ["exact", "relaxed", "relaxed_steerable"])
@pytest.mark.parametrize("group", ["C4", "D4"])
def test_valid_end_keeps_exact_equivariance_for_90_degree_turns(family, group):
    actor, critic = nets(family, group)
    hm, vec, act = batch(2)
    mean, log_std = actor(hm, vec)
    q1, _ = critic(hm, vec, act)
    assert mean.abs().max() > 1e-3
    for g in [g for g in Group.parse(group).elements if (4 * g.k) % g.n == 0]:
        m_g, ls_g = actor(transform_images(g, hm), vec)
        assert (m_g - transform_actions(g, mean)).abs().max() <= 1e-5, g
        assert (ls_g - log_std).abs().max() <= 1e-5, g
        p1, _ = critic(transform_images(g, hm), vec, transform_actions(g, act))
        assert (p1 - q1).abs().max() <= 1e-5, g
    assert equivariance_error(actor, hm, vec)["network"] <= 1e-5


def test_cnn_with_valid_end_is_not_equivariant():
    actor, _ = nets("cnn", "C4")
    hm, vec, _ = batch(3)
    assert equivariance_error(actor, hm, vec)["network"] > 1e-3


@pytest.mark.parametrize("family", ["exact", "cnn"])
def test_the_valid_end_knows_where_things_are_and_the_pooled_end_does_not(family):
    size = 64  # the blocks' receptive fields (17 px) stay clear of the border's zero padding
    hm = torch.full((2, 2, size, size), -0.15)
    hm[0, 0, 28:31, 28:31] = -0.05  # one block, then the same block 4 px (the pools' stride) further on
    hm[1, 0, 32:35, 32:35] = -0.05
    hm[:, 1] = 0.5
    with torch.no_grad():
        pooled = nets(family, "C4", end="pool", size=size)[0].encoder(hm)
        valid = nets(family, "C4", end="valid", size=size)[0].encoder(hm)
    assert (pooled[0] - pooled[1]).abs().max() <= 1e-6  # the global max forgets the shift
    assert (valid[0] - valid[1]).abs().max() > 1e-4


@pytest.mark.parametrize("family", ["exact", "relaxed", "cnn"])
def test_valid_end_exports_to_onnx_with_parity(tmp_path, family):
    import onnxruntime as ort

    actor, _ = nets(family, "C4")
    path = export_actor(actor, actor.spec, tmp_path / "a.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hm, vec, _ = batch(5)
    got = session.run(["action"], {"heightmap": hm.numpy(), "gripper": vec.numpy()})[0]
    with torch.no_grad():
        want = torch.tanh(actor.eval()(hm, vec)[0]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
