"""Property: random policy outputs through the safety filter and the UR driver's step limit, with the
controller double's lag, never move the commanded or the measured pose more than ``max_step`` a period and
never leave the workspace box.

Fast path: many arms at once in numpy. Each period: the filter (``filter_batch``, the loop's code) on the
measured pose, the driver's ``limit_step`` against the pose last commanded, the commanded pose moving
linearly to the target over the period (the stream), the measured one following with the double's exact
first-order lag (``lag_step``). Hypothesis draws the lag, the action scale and the seed; 10 examples of
500 arms x 20 periods = 1e5 policy outputs, plus one fixed 1e5 run.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ur_rig import ACTION, SAFETY

from hardware.ur import limit_step
from hardware.ur_double import lag_step
from robot_stack.runtime.safety import filter_batch

PERIOD = 0.1


def run_arms(seed: int, lag: float, scale: float, arms: int, periods: int) -> None:
    rng = np.random.default_rng(seed)
    low, high = SAFETY.low, SAFETY.high
    commanded = rng.uniform(low, high, size=(arms, 3))
    measured = commanded.copy()
    gripper = -np.ones(arms)
    for _ in range(periods):
        actions = rng.uniform(-scale, scale, size=(arms, 5))
        actions[rng.random(arms) < 0.05] = np.nan  # a policy that sends garbage now and then
        out = filter_batch(SAFETY, ACTION, actions, measured, gripper)
        target = limit_step(measured + out.dpos, measured, commanded, SAFETY.max_step)
        new_measured = lag_step(measured, commanded, target, PERIOD, lag)
        tol = 1e-9
        assert np.all(np.linalg.norm(target - commanded, axis=1) <= SAFETY.max_step + tol)
        assert np.all(np.linalg.norm(target - measured, axis=1) <= SAFETY.max_step + tol)
        assert np.all(np.linalg.norm(new_measured - measured, axis=1) <= SAFETY.max_step + tol)
        assert np.all(target >= low - tol) and np.all(target <= high + tol)
        assert np.all(new_measured >= low - tol) and np.all(new_measured <= high + tol)
        commanded, measured, gripper = target, new_measured, out.gripper


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), lag=st.floats(0.0, 0.14), scale=st.floats(0.1, 3.0))
def test_random_outputs_never_step_past_max_step_or_leave_the_box(seed, lag, scale):
    run_arms(seed, lag, scale, arms=500, periods=20)


def test_1e5_random_outputs_with_a_slow_arm():
    run_arms(7, lag=0.14, scale=2.0, arms=2000, periods=50)  # lag 1.4 x the period: the worst kept by the bound
