"""Symmetry-breaking variants with a strength in [0, 1]: the physical mapping (today's defaults kept), bad input
refused, world_goal and wall in the scene, and both symmetry gaps (sim.symmetry, robot-stack data symmetry-gap)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.config import ConfigError
from sim.variants import VARIANTS, Variant, check_task


@pytest.mark.parametrize("name, value", [("actuator_bias", 0.3), ("gravity_tilt", 10.0), ("table_friction", 3.0),
                                         ("placement", math.pi / 2), ("base_in_view", 0.2), ("world_goal", 0.06),
                                         ("wall", 0.3)])
def test_left_out_strength_keeps_the_physical_defaults(name, value):
    assert Variant.create(name).value == pytest.approx(value)


def test_strength_zero_is_symmetric_and_one_is_the_strongest():
    for name in VARIANTS:
        assert not Variant.create(name, 0.0).active
    assert Variant.create("table_friction", 0.0).value == 1.0  # the table's own friction
    assert Variant.create("placement", 0.0).placement_half_angle() == pytest.approx(math.pi)
    assert Variant.create("gravity_tilt", 1.0).value == 20.0
    np.testing.assert_allclose(Variant.create("world_goal", 0.5).goal_offset(), [0.03, 0.0])
    assert Variant.create("actuator_bias", 1.0).bias_dx(-1.0) == pytest.approx(-0.5)


@pytest.mark.parametrize("strength", [1.5, -0.1, float("nan"), "strong"])
def test_a_strength_outside_0_1_is_refused(strength):
    with pytest.raises(ConfigError, match=r"variant_strength: .* is not in \[0, 1\]"):
        Variant.create("wall", strength)


def test_unknown_variant_and_world_goal_without_a_pad_are_refused():
    with pytest.raises(ConfigError, match="'tilted' is not one of.*'world_goal', 'wall'"):
        Variant.create("tilted")
    with pytest.raises(ConfigError, match=r"tasks with one: \['push', 'reach'\], not 'lift'"):
        check_task("world_goal", "lift")


# ----- in the scene (robosuite) ----------------------------------------------------------------------------------

robosuite = pytest.importorskip("robosuite")


def test_world_goal_moves_push_success_and_the_expert_solves_it():
    import sim
    from sim.symmetry import expert_gap

    env = sim.make_env("push", seed=0, variant="world_goal", variant_strength=1.0)
    try:
        env.reset(seed=3)
        pad, _ = env.object_pose("goal")
        np.testing.assert_allclose(env.goal_position()[:2], pad[:2] + [0.06, 0.0])
        gap = expert_gap(env, episodes=3, seed=100)
    finally:
        env.close()
    # the expert (privileged state) reaches the hidden goal; its group average aims at the pad, and like any exactly
    # equivariant policy can succeed on at most about a quarter of the layouts (here: one of three, by pushing through)
    assert gap.expert_success >= 2 / 3 and gap.averaged_success <= 1 / 3 and gap.gap > 0.3


def test_wall_is_seen_and_strength_zero_is_the_symmetric_scene():
    import sim

    heightmaps = {}
    for variant, strength in (("none", None), ("wall", 0.0), ("wall", 1.0)):
        env = sim.make_env("reach", seed=0, variant=variant, variant_strength=strength)
        obs, _ = env.reset(seed=1)
        heightmaps[(variant, strength)] = obs["heightmap"][0]
        env.close()
    np.testing.assert_array_equal(heightmaps[("none", None)], heightmaps[("wall", 0.0)])
    rows = heightmaps[("wall", 1.0)][-4:]  # row grows with +y: the wall's strip along the +y edge
    assert np.median(rows.max(axis=0)) == pytest.approx(0.05, abs=0.005)
    assert heightmaps[("none", None)][-4:].max() < 0.01


def test_symmetry_gap_command_writes_the_table(tmp_path, capsys):
    stem = tmp_path / "gaps"
    argv = ["data", "symmetry-gap", "reach", "--variants", "none,world_goal", "--strengths", "1", "--layouts", "1",
            "--episodes", "2", "--out", str(stem)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "expert gap" in out and "group-avg success" in out
    rows = {r["variant"]: r for r in json.loads(stem.with_suffix(".json").read_text())}
    assert stem.with_suffix(".csv").read_text().startswith("task,variant,strength")
    assert rows["none"]["expert_gap"] < 1e-6 and rows["none"]["goal_gap_m"] == 0.0
    assert rows["world_goal"]["goal_gap_m"] == pytest.approx(0.06 * math.sqrt(2), abs=1e-6)
    assert rows["world_goal"]["expert_gap"] > 0.3 and rows["world_goal"]["averaged_success"] == 0.0
    assert rows["world_goal"]["expert_success"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--strengths", "0,1.5"], "--strengths: 1.5 is not in [0, 1]"),
    (["--strengths", "nan"], "--strengths: nan is not in [0, 1]"),
    (["--variants", "tilted"], "--variants: ['tilted'] not valid; valid variants: ['none'"),
    (["--variants", "world_goal"], "variant: 'world_goal' offsets a visible goal pad"),
    (["--variants", "none", "--layouts", "0"], "--layouts and --episodes must be at least 1"),
    (["--variants", "none", "--episodes", "0"], "--layouts and --episodes must be at least 1"),
])
def test_symmetry_gap_bad_input_is_one_line(args, message, capsys):
    assert main(["data", "symmetry-gap", "lift", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_symmetry_gap_of_a_task_without_gaps_is_one_line(capsys):
    assert main(["data", "symmetry-gap", "door"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not 'door'" in err, err


def test_symmetry_gap_variants_default_to_those_the_task_has():
    from robot_stack.jobs.symmetry import parse_variants

    assert "world_goal" not in parse_variants(None, "lift") and "world_goal" in parse_variants(None, "push")

