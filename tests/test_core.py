"""Specs, symmetry and config: the contracts every other part builds on."""

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_stack import config, symmetry
from robot_stack.specs import (
    ActionSpec,
    CameraIntrinsics,
    CameraSpec,
    HeightmapSpec,
    ObservationSpec,
    PolicySpec,
    SpecError,
    WorkspaceBox,
    look_down_pose,
    mismatches,
)
from robot_stack.symmetry import Group, GroupError, act_on_action, act_on_image, act_on_points


def test_group_parse_and_errors():
    assert Group.parse("c8").order == 8
    assert Group.parse("D4").order == 8
    assert Group.parse("trivial").order == 1
    with pytest.raises(GroupError, match="unknown group"):
        Group.parse("SO3")


@pytest.mark.parametrize("name", ["C2", "C4", "C8", "D2", "D4", "D8"])
def test_image_action_and_points_agree(name):
    """A blob at world point p moves to g.p in the image, and (dx, dy) pointing at it rotates alike."""
    group = Group.parse(name)
    size = 33
    center = (size - 1) / 2
    img = np.zeros((size, size), dtype=np.float32)
    col, row = 24, 20  # col ~ x, row ~ y
    img[row, col] = 1.0
    for g in group.elements:
        out = act_on_image(g, img, order=0)
        x, y = act_on_points(g, np.array([col, row], float), (center, center))
        if (4 * g.k) % g.n == 0:
            assert out[int(round(y)), int(round(x))] == 1.0
            assert out.sum() == 1.0
        else:
            r, c = np.unravel_index(np.argmax(out), out.shape)
            assert abs(r - y) <= 1 and abs(c - x) <= 1
        action = np.array([col - center, row - center, 0.3, 0.2, -1.0], np.float32)
        moved = act_on_action(g, action)
        np.testing.assert_allclose(moved[:2], [x - center, y - center], atol=1e-4)
        assert moved[2] == pytest.approx(0.3) and moved[4] == -1.0
        assert moved[3] == pytest.approx(-0.2 if g.flip else 0.2)


def test_rotation_by_90_is_counter_clockwise_in_world():
    g = Group.parse("C4").element(1)
    np.testing.assert_allclose(g.matrix @ [1, 0], [0, 1], atol=1e-12)
    img = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(act_on_image(g, img), np.rot90(img, k=-1))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 7), st.integers(0, 7))
def test_group_composition_on_actions(i, j):
    group = Group.parse("C8")
    a = np.random.default_rng(i * 8 + j).uniform(-1, 1, 5).astype(np.float32)
    gi, gj = group.element(i), group.element(j)
    composed = group.element((i + j) % 8)
    np.testing.assert_allclose(act_on_action(gi, act_on_action(gj, a)), act_on_action(composed, a), atol=1e-5)


def test_workspace_without_volume_is_refused():
    with pytest.raises(SpecError, match="no volume: x_max"):
        WorkspaceBox(x_min=0.5, x_max=0.5)
    with pytest.raises(SpecError, match="square"):
        HeightmapSpec(64, WorkspaceBox(0, 0.3, 0, 0.2))


def test_observation_spec_checks_name_shape_dtype_nan():
    spec = ObservationSpec.create(HeightmapSpec(16, WorkspaceBox(0, 0.3, 0, 0.3)))
    obs = spec.zeros()
    spec.check(obs)
    with pytest.raises(SpecError, match="'heightmap': expected shape"):
        spec.check({**obs, "heightmap": np.zeros((1, 8, 8), np.float32)})
    with pytest.raises(SpecError, match="expected dtype float32"):
        spec.check({**obs, "gripper": np.zeros(2, np.float64)})
    with pytest.raises(SpecError, match="missing \\['gripper'\\]"):
        spec.check({"heightmap": obs["heightmap"]})
    bad = spec.zeros()
    bad["gripper"][0] = np.nan
    with pytest.raises(SpecError, match="NaN"):
        spec.check(bad)


def test_action_clip_counts_and_refuses_nan():
    spec = ActionSpec()
    clipped, n = spec.clip(np.array([2, 0, -3, 0.5, 1], np.float32))
    assert n == 2 and clipped.max() == 1 and clipped.min() == -1
    with pytest.raises(SpecError, match="NaN"):
        spec.clip(np.array([np.nan, 0, 0, 0, 0], np.float32))
    metric = spec.to_metric(np.ones(5))
    assert metric[0] == pytest.approx(0.05) and metric[3] == pytest.approx(math.pi / 8)


def test_policy_spec_round_trip_and_mismatch_names_the_field():
    hm = HeightmapSpec(64)
    spec = PolicySpec(ObservationSpec.create(hm), ActionSpec(), hm, "C8", "relaxed")
    again = PolicySpec.from_json(spec.to_json())
    assert mismatches(spec, again) == []
    other = PolicySpec(ObservationSpec.create(HeightmapSpec(128)), ActionSpec(), HeightmapSpec(128), "C8")
    diffs = mismatches(spec, other)
    assert any(d.startswith("heightmap.size") for d in diffs)


def test_camera_spec_yaml_round_trip(tmp_path):
    cam = CameraSpec.create(CameraIntrinsics.from_fovy(45, 640, 480, 0.001), look_down_pose((0.5, 0, 1.0)))
    cam.to_yaml(tmp_path / "cam.yaml")
    again = CameraSpec.from_yaml(tmp_path / "cam.yaml")
    assert again == cam
    with pytest.raises(SpecError, match="rigid"):
        CameraSpec.create(cam.intrinsics, np.eye(4) * 2)


@dataclass
class _Inner:
    lr: float = 1e-3
    layers: list[int] = field(default_factory=lambda: [32, 32])


@dataclass
class _Job:
    task: str = "lift"
    seed: int = 0
    inner: _Inner = field(default_factory=_Inner)


def test_config_load_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("task: push\ninner:\n  lr: 0.01\n")
    cfg = config.load(_Job, path, ["seed=3", "inner.layers=[8, 8]"])
    assert (cfg.task, cfg.seed, cfg.inner.lr, cfg.inner.layers) == ("push", 3, 0.01, [8, 8])
    with pytest.raises(config.ConfigError, match=r"unknown key\(s\) \['sed'\]; valid keys: \['task', 'seed'"):
        config.load(_Job, path, ["sed=3"])
    with pytest.raises(config.ConfigError, match="inner: unknown key"):
        config.load(_Job, path, ["inner.lrr=3"])
    with pytest.raises(config.ConfigError, match="seed: expected an integer"):
        config.load(_Job, path, ["seed=abc"])
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(_Job, tmp_path / "nope.yaml")


def test_cli_help_lists_commands(capsys):
    from robot_stack.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capsys.readouterr().out
    assert symmetry.GROUP_KINDS == ("C", "D")
