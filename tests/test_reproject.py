"""Sim and real share the observation path; stores keep depth + arm state and re-project into another view."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")

import sim  # noqa: E402
from hardware.sim_arm import SimArm, projector_for  # noqa: E402
from robot_stack.cli import main  # noqa: E402
from robot_stack.observation import arm_vector  # noqa: E402
from robot_stack.recorder import EpisodeDataset, EpisodeRecorder, StoreError  # noqa: E402
from robot_stack.recorder.reproject import reproject  # noqa: E402
from robot_stack.runtime import ControlLoop, SafetyFilter  # noqa: E402
from robot_stack.runtime.control import LoopConfig  # noqa: E402
from robot_stack.runtime.safety import SafetyConfig  # noqa: E402
from robot_stack.specs import PolicySpec  # noqa: E402

SIZE = 32
STEPS = 4


@pytest.fixture(scope="module")
def gripper_env():
    env = sim.make_env("push", view="gripper", heightmap_size=SIZE)
    yield env
    env.close()


def record(env, path, episodes=2, keep_arm=True) -> list[list[dict]]:
    """Random-action episodes recorded with raw depth and the observed arm state; returns the env's observations."""
    rng = np.random.default_rng(0)
    meta = {"task": "push", "camera": env.camera.spec.to_dict(), "heightmap": env.heightmap_spec.to_dict()}
    seen = []
    with EpisodeRecorder(path, env.observation_spec, env.action_spec, meta, when_full="wait", keep_depth=True) as rec:
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed)
            rec.start_episode({"seed": seed})
            seen.append([])
            for _ in range(STEPS):
                info = {"depth": env.render()}
                if keep_arm:
                    info["arm"] = arm_vector(env.observed_arm_state())
                action = rng.uniform(-1, 1, 5).astype(np.float32)
                seen[-1].append(obs)
                next_obs, reward, terminated, _, _ = env.step(action)
                rec.add_step(obs, action, reward, {**info, "terminal": terminated})
                obs = next_obs
            rec.end_episode(False)
    return seen


def test_sim_env_gripper_view_fits_its_spec(gripper_env):
    obs, _ = gripper_env.reset(seed=3)
    spec = gripper_env.observation_spec
    assert spec["heightmap"].shape == (2, SIZE, SIZE) and gripper_env.heightmap_spec.view == "gripper"
    spec.check(obs)
    assert gripper_env.observation_space.contains(obs)
    opening = 1.0 - gripper_env.gripper_closure()
    np.testing.assert_allclose(obs["heightmap"][1], opening, atol=1e-6)  # the gripper channel
    ee_height = gripper_env.ee_position()[2]
    assert np.median(obs["heightmap"][0]) == pytest.approx(-ee_height, abs=2e-3)  # mostly table, below the ee


def test_reproject_round_trip_and_the_data_command(gripper_env, tmp_path, capsys):
    src, ws, back = tmp_path / "g.zarr", tmp_path / "w.zarr", tmp_path / "g2.zarr"
    record(gripper_env, src)
    summary = reproject(src, ws, view="workspace")
    assert summary["episodes"] == 2 and summary["steps"] == 2 * STEPS
    wds = EpisodeDataset(ws)
    assert wds.obs_spec["heightmap"].shape == (1, SIZE, SIZE) and wds.meta["heightmap"]["view"] == "workspace"
    assert main(["data", "reproject", str(ws), str(back), "--view", "gripper"]) == 0
    assert "re-projected 2 episodes" in capsys.readouterr().out
    original, again = EpisodeDataset(src), EpisodeDataset(back)
    assert again.obs_spec.to_dict() == original.obs_spec.to_dict()
    for i in range(2):
        a, b = original.episode(i), again.episode(i)
        np.testing.assert_array_equal(b.obs["heightmap"], a.obs["heightmap"])
        np.testing.assert_array_equal(b.obs["gripper"], a.obs["gripper"])
        np.testing.assert_array_equal(b.action, a.action)
        np.testing.assert_array_equal(b.extras["arm"], a.extras["arm"])
    # the workspace re-projection is what a workspace-view env sees of the same episode (another camera: approx.)
    workspace_env = sim.make_env("push", view="workspace", heightmap_size=SIZE)
    try:
        first = workspace_env.reset(seed=0)[0]["heightmap"]
    finally:
        workspace_env.close()
    assert np.mean(np.abs(wds.episode(0).obs["heightmap"][0] - first)) < 2e-3
    with pytest.raises(StoreError, match="already exists"):
        reproject(src, ws, view="workspace")


def test_a_store_without_arm_state_is_refused(gripper_env, tmp_path):
    src = tmp_path / "noarm.zarr"
    record(gripper_env, src, episodes=1, keep_arm=False)
    with pytest.raises(StoreError, match=r"no per-step \['arm'\]"):
        reproject(src, tmp_path / "out.zarr", view="workspace")


class _Recording:
    """A policy that keeps what the loop showed it, beside what the env itself observed at that moment."""

    def __init__(self, spec: PolicySpec, arm: SimArm) -> None:
        self.spec, self.arm, self.pairs = spec, arm, []

    def act(self, obs, timeout=None):
        self.pairs.append((obs, self.arm.obs))
        return np.array([0.6, -0.4, -0.3, 0.5, 0.0], np.float32)


def test_control_loop_builds_the_sim_envs_observation(tmp_path):
    """`robot-stack run`'s path (camera frame + the arm's reported state -> ObservationBuilder) gives the sim env's
    own gripper-centred observation, bit for bit, and records the arm state and depth for re-projection."""
    arm = SimArm(sim.make_env("push", view="gripper", heightmap_size=SIZE), seed=0)
    obs_spec, action_spec, hm_spec = arm.env.policy_spec_parts
    spec = PolicySpec(obs_spec, action_spec, hm_spec, "C4", "cnn")
    policy = _Recording(spec, arm)
    camera = arm.camera()
    with EpisodeRecorder(tmp_path / "run.zarr", obs_spec, action_spec, keep_depth=True) as rec:
        safety = SafetyFilter(SafetyConfig(), action_spec)
        loop = ControlLoop(arm, camera, projector_for(camera, hm_spec), policy, safety, spec,
                           LoopConfig(rate_hz=20.0, max_steps=5, realtime=False), recorder=rec, log=lambda msg: None)
        loop.run()
    arm.close()
    assert len(policy.pairs) == 5
    for seen, env_obs in policy.pairs:
        np.testing.assert_array_equal(seen["heightmap"], env_obs["heightmap"])
        np.testing.assert_array_equal(seen["gripper"], env_obs["gripper"])
    ep = EpisodeDataset(tmp_path / "run.zarr").episode(0)
    assert ep.extras["arm"].shape == (5, 5) and ep.extras["depth"].shape[0] == 5
    assert ep.meta["heightmap"]["view"] == "gripper" and ep.meta["camera"]["intrinsics"]["width"] > 0
    np.testing.assert_array_equal(ep.obs["heightmap"][0], policy.pairs[0][0]["heightmap"])


def test_a_collected_store_keeps_what_reprojection_needs(tmp_path):
    out = tmp_path / "collected.zarr"
    assert main(["collect", "collect_push", "episodes=1", "max_steps=3", "record_depth=true", f"out={out}",
                 f"sim.heightmap_size={SIZE}", "sim.view=gripper", "noise=0.0"]) == 0
    summary = reproject(out, tmp_path / "w.zarr", view="workspace")
    assert summary["episodes"] == 1 and summary["steps"] == 3
