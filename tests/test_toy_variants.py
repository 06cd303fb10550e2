"""The toy reach task's symmetry-breaking variant (``variant: action_bias``): applied, default unchanged, checked."""

from __future__ import annotations

import numpy as np
import pytest

from sim.toy import DEFAULT_ACTION_BIAS, ToyReachEnv, ToyReachExpert

SIZE = 16


def _near_centre(env: ToyReachEnv) -> None:
    """Reset until the gripper sits well inside the disc, so one step cannot reach its rim."""
    for seed in range(100):
        env.reset(seed=seed)
        if np.linalg.norm(env.gripper_xy) < 0.5:
            return
    raise AssertionError("no seed put the gripper near the centre")


def _step_xy(env: ToyReachEnv, command_xy: tuple[float, float]) -> np.ndarray:
    """The gripper's displacement, in action units, for one step of ``command_xy``."""
    before = env.gripper_xy
    env.step(np.array([*command_xy, 0.0, 0.0, 0.0], dtype=np.float32))
    return (env.gripper_xy - before) * env._half / env.cfg.dpos


def _success_rate(env: ToyReachEnv, expert: ToyReachExpert, episodes: int) -> float:
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=7000 + ep)
        done, info = False, {}
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
        wins += info["success"]
    return wins / episodes


def test_default_executes_the_command_unchanged():
    env = ToyReachEnv(heightmap_size=SIZE)
    assert env.cfg.variant == "none" and np.array_equal(env.action_bias, [0.0, 0.0])
    _near_centre(env)
    np.testing.assert_allclose(_step_xy(env, (0.3, -0.2)), [0.3, -0.2], atol=1e-6)


def test_default_and_explicit_none_give_the_same_episode():
    a, b = ToyReachEnv(heightmap_size=SIZE), ToyReachEnv(heightmap_size=SIZE, variant="none")
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 5)).astype(np.float32):
        np.testing.assert_array_equal(oa["heightmap"], ob["heightmap"])
        oa, ra, *_ = a.step(action)
        ob, rb, *_ = b.step(action)
        assert ra == rb


def test_action_bias_is_added_to_the_executed_motion():
    env = ToyReachEnv(heightmap_size=SIZE, variant="action_bias")
    assert np.array_equal(env.action_bias, DEFAULT_ACTION_BIAS)
    _near_centre(env)
    np.testing.assert_allclose(_step_xy(env, (0.0, 0.0)), DEFAULT_ACTION_BIAS, atol=1e-6)
    _near_centre(env)
    np.testing.assert_allclose(_step_xy(env, (-0.6, -0.6)), [0.0, 0.0], atol=1e-6)


def test_custom_action_bias_from_a_yaml_list():
    env = ToyReachEnv(heightmap_size=SIZE, variant="action_bias", action_bias=[-0.25, 0.5])
    assert env.cfg.action_bias == (-0.25, 0.5)
    _near_centre(env)
    np.testing.assert_allclose(_step_xy(env, (0.5, 0.0)), [0.25, 0.5], atol=1e-6)


@pytest.mark.parametrize("opts, needle", [
    ({"variant": "tilt"}, "'tilt'"),
    ({"variant": "action_bias", "action_bias": [1.0, 0.0]}, "[1.0, 0.0]"),
    ({"variant": "action_bias", "action_bias": [float("nan"), 0.0]}, "nan"),
    ({"variant": "action_bias", "action_bias": [0.1]}, "[0.1]"),
    ({"variant": "action_bias", "action_bias": "up"}, "'up'"),
    ({"action_bias": [0.2, 0.2]}, "needs variant 'action_bias'"),
])
def test_bad_variant_options_are_refused(opts, needle):
    with pytest.raises(ValueError) as err:  # SpecError, or ConfigError naming the key
        ToyReachEnv(heightmap_size=SIZE, **opts)
    assert needle in str(err.value)


def test_expert_compensates_the_bias():
    env = ToyReachEnv(heightmap_size=SIZE, variant="action_bias")
    assert _success_rate(env, ToyReachExpert(env), 50) >= 0.9
    assert _success_rate(env, ToyReachExpert(env, compensate=False), 50) <= 0.3


def test_sweep_toy_builds_the_18_trials():
    from robot_stack import config
    from robot_stack.jobs.sweep import SweepConfig, make_trials

    trials = make_trials(config.load(SweepConfig, "sweep_toy", []))
    assert len(trials) == 18
    broken = [t for t in trials if t.variant == "action_bias"]
    assert len(broken) == 9 and all(t.job_config["env"]["variant"] == "action_bias" for t in broken)
    assert all("variant" not in t.job_config["env"] for t in trials if t.variant == "none")
    assert {t.job_config["sac"]["rotated_copies"] for t in trials} == {0}
    assert {t.job_config["total_steps"] for t in trials} == {1200}
