"""Safety filter: no command outside the workspace box or the step limits ever reaches the arm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robot_stack.devices import ArmState
from robot_stack.runtime.safety import SafetyConfig, SafetyFilter, filter_batch
from robot_stack.specs import ActionSpec, WorkspaceBox

TOL = 1e-9


def wild_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Policy outputs as a broken network could give them: in range, far out of range, NaN, inf."""
    a = rng.uniform(-1, 1, (n, 5))
    scale = rng.choice([1.0, 3.0, 1e3, 1e30], size=(n, 1))
    a = a * scale
    mask = rng.random((n, 5))
    a[mask < 0.01] = np.nan
    a[(mask >= 0.01) & (mask < 0.02)] = np.inf
    a[(mask >= 0.02) & (mask < 0.03)] = -np.inf
    return a


def check_batch(cfg: SafetyConfig, ee: np.ndarray, out) -> None:
    step = np.linalg.norm(out.dpos, axis=1)
    assert np.all(np.isfinite(out.dpos)) and np.all(np.isfinite(out.dyaw))
    assert np.all(step <= cfg.max_step + TOL), f"step {step.max()} > {cfg.max_step}"
    assert np.all(np.abs(out.dyaw) <= cfg.max_dyaw + TOL)
    target = ee + out.dpos
    assert np.all(target >= cfg.low - TOL) and np.all(target <= cfg.high + TOL), "target outside the box"
    assert set(np.unique(out.gripper)) <= {-1.0, 1.0}


boxes = st.builds(
    lambda x, y, size, z0, h: WorkspaceBox(x, x + size, y, y + size, z0, z0 + h),
    st.floats(-1, 1), st.floats(-1, 1), st.floats(0.1, 0.8), st.floats(-0.2, 0.5), st.floats(0.1, 0.6))


@settings(max_examples=10, deadline=None, derandomize=True)
@given(box=boxes, margin=st.floats(0, 0.02), max_step=st.floats(0.001, 0.2), dpos=st.floats(0.001, 0.5),
       max_dyaw=st.floats(0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_property_1e5_random_outputs_never_leave_box_or_step_limits(box, margin, max_step, dpos, max_dyaw, seed):
    """10 configurations x 20,000 random policy outputs (2e5 in all), each from a pose inside the box."""
    cfg = SafetyConfig(workspace=box, margin=margin, max_step=max_step, max_dyaw=max_dyaw)
    spec = ActionSpec(dpos=dpos)
    rng = np.random.default_rng(seed)
    n = 20_000
    ee = rng.uniform(cfg.low, cfg.high, (n, 3))
    ee[: n // 10] = rng.choice([cfg.low, cfg.high], size=n // 10)  # on the faces and corners
    actions = wild_actions(rng, n)
    out = filter_batch(cfg, spec, actions, ee, rng.choice([-1.0, 1.0], n))
    check_batch(cfg, ee, out)
    bad = ~np.all(np.isfinite(actions), axis=1)
    assert np.array_equal(out.nan, bad)
    assert np.all(out.dpos[bad] == 0) and np.all(out.dyaw[bad] == 0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(actions=hnp.arrays(np.float64, (8, 5), elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       ee=hnp.arrays(np.float64, (8, 3), elements=st.floats(0, 1)))
def test_property_arbitrary_floats_from_any_pose(actions, ee):
    """Any float a policy can emit, from any pose: step limits always hold, and never moving away from the box."""
    cfg = SafetyConfig()
    ee = cfg.low + ee * (cfg.high - cfg.low) * 1.5 - 0.1  # some poses outside the box
    out = filter_batch(cfg, ActionSpec(), actions, ee, np.full(8, -1.0))
    assert np.all(np.linalg.norm(out.dpos, axis=1) <= cfg.max_step + TOL)
    before = np.linalg.norm(np.clip(ee, cfg.low, cfg.high) - ee, axis=1)
    after = np.linalg.norm(np.clip(ee + out.dpos, cfg.low, cfg.high) - (ee + out.dpos), axis=1)
    assert np.all(after <= before + TOL)


def test_in_range_action_inside_the_box_passes_unchanged():
    cfg = SafetyConfig(max_step=0.1)
    spec = ActionSpec(dpos=0.05, dtheta=math.pi / 8)
    out = filter_batch(cfg, spec, np.array([[0.2, -0.4, 0.6, 0.5, 0.9]]), np.array([[0.5, 0.0, 0.15]]),
                       np.array([-1.0]))
    np.testing.assert_allclose(out.dpos[0], [0.01, -0.02, 0.03])
    assert out.dyaw[0] == pytest.approx(0.5 * math.pi / 8)
    assert out.gripper[0] == 1.0 and not out.clipped[0] and not out.nan[0]


def test_stateful_filter_debounces_gripper_and_holds_on_nan():
    cfg = SafetyConfig(gripper_min_periods=3)
    f = SafetyFilter(cfg, ActionSpec())
    state = ArmState(ee_pos=np.array([0.5, 0.0, 0.1]))
    grips = []
    for g in [1, -1, -1, -1, 1, 1]:
        cmd, _ = f(np.array([0, 0, 0, 0, g], float), state)
        grips.append(cmd.gripper)
    # close at once (start state held long enough), then the open is refused until 3 periods have passed
    assert grips == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    cmd, report = f(np.array([np.nan, 0, 0, 0, 1.0]), state)
    assert report.nan and np.all(cmd.dpos == 0) and cmd.gripper == -1.0


def test_stateful_filter_over_many_periods_never_exceeds_limits():
    """Drive a simulated end effector with 20,000 wild actions; every command and pose stays within limits."""
    cfg = SafetyConfig()
    f = SafetyFilter(cfg, ActionSpec(dpos=0.2))
    rng = np.random.default_rng(3)
    pos = np.array(cfg.workspace.center)
    for action in wild_actions(rng, 20_000):
        cmd, _ = f(action, ArmState(ee_pos=pos))
        assert np.linalg.norm(cmd.dpos) <= cfg.max_step + TOL and abs(cmd.dyaw) <= cfg.max_dyaw + TOL
        pos = pos + cmd.dpos
        assert np.all(pos >= cfg.low - TOL) and np.all(pos <= cfg.high + TOL)


def test_config_refuses_limits_that_leave_no_workspace():
    with pytest.raises(ValueError, match="margin"):
        SafetyConfig(margin=0.2)
    with pytest.raises(ValueError):
        SafetyConfig(max_step=0)
