"""Networks: convention bridge to escnn, equivariance, relaxed-at-init == exact, planted asymmetry, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.networks import NetworkConfig, NetworkError, build_actor, build_critic
from policies.networks.diagnostics import equivariance_error, relaxed_weights_report
from policies.networks.groups import action_matrix, escnn_element, gspace_for, transform_actions, transform_images
from robot_stack.plotting import weight_grid
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec
from robot_stack.symmetry import Group, act_on_action, act_on_image

GROUPS = ["C2", "C4", "C8", "D2", "D4"]
SMALL = dict(widths=(2, 3), kernel_sizes=(5, 3), hidden=3)
_CACHE: dict = {}


def make_spec(size: int = 32) -> PolicySpec:
    hs = HeightmapSpec(size)
    return PolicySpec(ObservationSpec.create(hs), ActionSpec(), hs)


def nets(family: str, group: str, size: int = 32):
    key = (family, group, size)
    if key not in _CACHE:
        torch.manual_seed(0)
        cfg = NetworkConfig(family=family, group=group, **SMALL)
        _CACHE[key] = (build_actor(make_spec(size), cfg), build_critic(make_spec(size), cfg))
    return _CACHE[key]


def batch(seed: int, size: int = 32, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    hm = torch.rand(n, 1, size, size, generator=g)
    hm[:, :, : size // 3, : size // 4] += 1.0  # an off-centre block: inputs without any symmetry of their own
    return hm, torch.rand(n, 2, generator=g), torch.rand(n, 5, generator=g) * 2 - 1


def pixel_elements(group: str):
    return [g for g in Group.parse(group).elements if (4 * g.k) % g.n == 0]


@pytest.mark.parametrize("group", GROUPS + ["D8"])
def test_escnn_element_moves_pixels_like_ours(group):
    from escnn import nn as enn

    gspace = gspace_for(group)
    img = batch(1, 16, 1)[0].numpy()
    x = enn.GeometricTensor(torch.from_numpy(img), enn.FieldType(gspace, [gspace.trivial_repr]))
    for g in Group.parse(group).elements:
        ours = act_on_image(g, img)
        errors = {str(e): float(np.abs(x.transform(e).tensor.numpy() - ours).max()) for e in gspace.fibergroup.elements}
        mapped = float(np.abs(x.transform(escnn_element(gspace, g)).tensor.numpy() - ours).max())
        if (4 * g.k) % g.n == 0:
            assert mapped == 0.0, (g, errors)
        else:  # interpolated rotations: ours is still the closest escnn element
            assert mapped == min(errors.values()), (g, errors)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(GROUPS + ["C8", "D8"]), st.integers(0, 15), st.lists(st.floats(-1, 1), min_size=5, max_size=5))
def test_action_matrix_is_act_on_action(group, index, action):
    g = Group.parse(group).elements[index % Group.parse(group).order]
    a = np.asarray(action, dtype=np.float32)
    np.testing.assert_allclose(action_matrix(g) @ a, act_on_action(g, a), atol=1e-6)
    np.testing.assert_allclose(transform_actions(g, torch.from_numpy(a)).numpy(), act_on_action(g, a), atol=1e-6)


@pytest.mark.parametrize("group", ["C8", "D4"])
def test_torch_image_transform_matches_symmetry_module(group):
    hm = batch(2, 16, 2)[0]
    for g in Group.parse(group).elements:
        np.testing.assert_allclose(transform_images(g, hm).numpy(), act_on_image(g, hm.numpy()), atol=1e-5)


@pytest.mark.parametrize("group", GROUPS)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_exact_actor_equivariant_and_critic_invariant(group, seed):
    actor, critic = nets("exact", group)
    hm, vec, act = batch(seed)
    mean, log_std = actor(hm, vec)
    assert mean.abs().max() > 1e-3  # a non-degenerate output, so the check below can fail
    q1, q2 = critic(hm, vec, act)
    for g in pixel_elements(group):
        m_g, ls_g = actor(transform_images(g, hm), vec)
        assert (m_g - transform_actions(g, mean)).abs().max() <= 1e-5, g
        assert (ls_g - log_std).abs().max() <= 1e-5, g
        p1, p2 = critic(transform_images(g, hm), vec, transform_actions(g, act))
        assert max((p1 - q1).abs().max(), (p2 - q2).abs().max()) <= 1e-5, g


def test_cnn_is_not_equivariant():
    actor, _ = nets("cnn", "C4")
    hm, vec, _ = batch(3)
    assert equivariance_error(actor, hm, vec)["network"] > 1e-3


@pytest.mark.parametrize("family", ["relaxed", "relaxed_steerable"])
@pytest.mark.parametrize("group", ["C4", "C8", "D4", "D2"])
def test_relaxed_at_init_equals_exact_counterpart(family, group):
    actor, critic = nets(family, group)
    hm, vec, act = batch(4)
    exact_actor, exact_critic = actor.exact_counterpart(), critic.exact_counterpart()
    assert exact_actor.family == "exact"
    for a, b in zip(actor(hm, vec), exact_actor(hm, vec), strict=True):
        assert (a - b).abs().max() <= 1e-5
    for a, b in zip(critic(hm, vec, act), exact_critic(hm, vec, act), strict=True):
        assert (a - b).abs().max() <= 1e-5
    assert equivariance_error(actor, hm, vec)["network"] <= 1e-5
    assert float(actor.regularization().detach()) == pytest.approx(0.0, abs=1e-9)


def _train_on_planted_asymmetry(family: str, steps: int = 25):
    """Fit mean = (0.8, 0, 0, 0, 0) everywhere: a fixed world direction, which no equivariant actor can output."""
    torch.manual_seed(1)
    actor = build_actor(make_spec(), NetworkConfig(family=family, group="C4", **SMALL))
    opt = torch.optim.Adam(actor.parameters(), lr=2e-2)
    target = torch.tensor([[0.8, 0.0, 0.0, 0.0, 0.0]])
    for step in range(steps):
        hm, vec, _ = batch(100 + step, n=8)
        loss = ((actor(hm, vec)[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actor


def test_planted_asymmetry_relaxed_breaks_exact_does_not():
    hm, vec, _ = batch(999, n=6)
    errors = {f: equivariance_error(_train_on_planted_asymmetry(f), hm, vec)
              for f in ("exact", "relaxed", "relaxed_steerable")}
    assert errors["exact"]["network"] <= 1e-5
    assert max(errors["exact"]["per_layer"]) <= 1e-5
    for family in ("relaxed", "relaxed_steerable"):
        assert errors[family]["network"] > 0.05, (family, errors[family])
        assert max(errors[family]["per_layer"]) > 1e-2, (family, errors[family])


def test_relaxed_weights_report_and_png(tmp_path):
    actor = _train_on_planted_asymmetry("relaxed", steps=5)
    rows = relaxed_weights_report(actor)
    assert [r["kind"] for r in rows] == ["lifting", "group"]
    assert sorted(rows[0]["elements"]) == sorted(str(g) for g in Group.parse("C4").elements)
    assert np.asarray(rows[0]["weights"]).shape == (4, actor.cfg.filter_banks)
    assert rows[0]["spread"] > 0
    assert float(actor.regularization().detach()) > 0
    path = weight_grid(tmp_path / "w.png", rows, "relaxed actor")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("size", [64, 84, 128])
def test_sizes_from_spec(size):
    cfg = NetworkConfig(family="exact", group="C4", widths=(1, 1, 1), kernel_sizes=(3, 3, 3), hidden=1)
    actor = build_actor(make_spec(size), cfg)
    mean, log_std = actor(torch.rand(2, 1, size, size), torch.rand(2, 2))
    assert mean.shape == (2, 5) and log_std.shape == (2, 5)
    q1, q2 = build_critic(make_spec(size), cfg)(torch.rand(2, 1, size, size), torch.rand(2, 2), torch.rand(2, 5))
    assert q1.shape == (2, 1) and q2.shape == (2, 1)
    assert build_critic(make_spec(size), cfg, twin=False)(torch.rand(1, 1, size, size), torch.rand(1, 2),
                                                         torch.rand(1, 5)).shape == (1, 1)


def test_batch_rotation_acts_on_heightmaps_and_action_together():
    from robot_stack.symmetry import act_on_batch

    hm, _, act = batch(5, 16, 6)
    out_act, idx, (out_hm,) = act_on_batch(Group.parse("D4"), np.random.default_rng(0), act.numpy(), hm.numpy())
    for i, j in enumerate(idx):
        g = Group.parse("D4").element(int(j))
        np.testing.assert_allclose(out_hm[i], act_on_image(g, hm[i].numpy()), atol=1e-6)
        np.testing.assert_allclose(out_act[i], act_on_action(g, act[i].numpy()), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(family="gcnn"), "unknown network family 'gcnn'"),
    (dict(group="Q8"), "unknown group 'Q8'"),
    (dict(widths=(2, 2), kernel_sizes=(4, 3)), "odd"),
    (dict(widths=(2, 2), kernel_sizes=(3,)), "one entry per width"),
    (dict(width_match="flops"), "unknown width_match"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(NetworkError, match=match):
        NetworkConfig(**kwargs)


def test_bad_sizes_and_inputs():
    with pytest.raises(NetworkError, match="heightmap size 6 cannot be taken"):
        build_actor(make_spec(6), NetworkConfig(family="exact", group="C4", widths=(1, 1, 1),
                                                 kernel_sizes=(3, 3, 3)))
    actor, critic = nets("exact", "C4")
    with pytest.raises(NetworkError, match=r"heightmap must have shape \[B, 1, 32, 32\]"):
        actor(torch.rand(2, 1, 64, 64), torch.rand(2, 2))
    with pytest.raises(NetworkError, match="vector must have shape"):
        actor(torch.rand(2, 1, 32, 32), torch.rand(2, 3))
    with pytest.raises(NetworkError, match="action must have shape"):
        critic(torch.rand(2, 1, 32, 32), torch.rand(2, 2), torch.rand(2, 4))
    with pytest.raises(NetworkError, match="relaxed family"):
        actor.exact_counterpart()


@pytest.mark.parametrize("family", ["cnn", "exact", "relaxed"])
def test_critic_encode_once_matches_forward(family):
    """Critic.encode + q_from_features (one encoder pass, many actions per state) == forward on repeated states."""
    _, critic = nets(family, "C4")
    hm, vec, _ = batch(5)
    n = 4
    actions = torch.rand(hm.shape[0] * n, 5) * 2 - 1
    feats = critic.encode(hm)
    q1, q2 = critic.q_from_features(feats.repeat_interleave(n, 0), vec.repeat_interleave(n, 0), actions)
    r1, r2 = critic(hm.repeat_interleave(n, 0), vec.repeat_interleave(n, 0), actions)
    assert q1.shape == (hm.shape[0] * n, 1) and q1.std() > 1e-4  # different actions give different Q
    torch.testing.assert_close(q1, r1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q2, r2, atol=1e-5, rtol=1e-5)
    single = build_critic(make_spec(), NetworkConfig(family="cnn", group="C4", **SMALL), twin=False)
    assert single.q_from_features(single.encode(hm), vec, actions[:3]).shape == (3, 1)
    with pytest.raises(NetworkError, match="features"):
        critic.q_from_features(feats[:, :-1], vec, actions[:3])


def test_pool_plan_pools_only_even_maps_and_default_covers_the_workspace():
    cfg = NetworkConfig()
    assert cfg.pool_plan(64) == (True, True, True, True, False)  # 64 -> 4 px: every cell sees the whole map
    assert cfg.pool_plan(84) == (True, True, False, False, False)  # 84 -> 42 -> 21, then no lossy pool
    assert NetworkConfig(widths=(1, 1), kernel_sizes=(3, 3)).pool_plan(64) == (True, False)


@pytest.mark.parametrize("family", ["exact", "relaxed"])
def test_odd_sized_maps_keep_exact_equivariance(family):
    spec = make_spec(20)  # 20 -> 10 -> 5: the last two blocks run on an odd 5 px map
    cfg = NetworkConfig(family=family, group="D4", widths=(1, 1, 1, 1), kernel_sizes=(3, 3, 3, 3), hidden=2)
    torch.manual_seed(0)
    actor, critic = build_actor(spec, cfg), build_critic(spec, cfg)
    hm, vec, act = batch(4, 20, 3)
    assert equivariance_error(actor, hm, vec)["network"] < 1e-5
    assert equivariance_error(critic, hm, vec, act)["network"] < 1e-5


def _regular_c4_conv_pair():
    from escnn import nn as enn

    from policies.networks.layers import RelaxedGroupConv

    torch.manual_seed(0)
    gspace = gspace_for(Group.parse("C4"))
    in_type = enn.FieldType(gspace, [gspace.regular_repr] * 3)
    relaxed = RelaxedGroupConv(in_type, out_fields=4, kernel_size=3, banks=2)
    exact = enn.R2Conv(in_type, relaxed.out_type, 3, padding=1, bias=False)
    return in_type, relaxed, exact


def _relative_filter_step(module, filter_fn, x) -> float:
    """||filter after one Adam step - before|| / ||before|| on a fixed random linear loss."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    before = filter_fn().detach().clone()
    out = module(x).tensor
    loss = (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum()
    loss.backward()
    opt.step()
    return float((filter_fn().detach() - before).norm() / before.norm())


def test_relaxed_banks_learn_at_the_rate_of_an_exact_conv():
    """Adam moves each weight by ~lr: banks stored |G| sqrt(L) times larger learned that many times slower."""
    from escnn import nn as enn

    in_type, relaxed, exact = _regular_c4_conv_pair()
    relaxed.relaxed_weights.requires_grad_(False)  # the banks alone
    x = enn.GeometricTensor(torch.randn(2, in_type.size, 9, 9, generator=torch.Generator().manual_seed(2)), in_type)
    step_relaxed = _relative_filter_step(relaxed, relaxed.filter, x)
    step_exact = _relative_filter_step(exact, lambda: exact.expand_parameters()[0], x)
    assert 0.5 <= step_relaxed / step_exact <= 2.0, (step_relaxed, step_exact)


def test_relaxed_state_dict_from_before_the_bank_scale_buffer_loads_to_the_same_filter():
    _, saved, _ = _regular_c4_conv_pair()
    old = {k: v for k, v in saved.state_dict().items() if k != "bank_scale"}
    old["bank.weights"] = old["bank.weights"] * saved.bank_scale  # the old layout: the factor in the weights
    _, loaded, _ = _regular_c4_conv_pair()
    with torch.no_grad():
        loaded.bank.weights.zero_()
    loaded.load_state_dict(old)
    torch.testing.assert_close(loaded.filter(), saved.filter())
