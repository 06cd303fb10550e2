"""The real path builds the sim's observation (issue 19): `robot-stack run` with a RealSense recording and the sim arm.

The sim env's own depth frames of a push scene (gripper view, 32 px) are written into a real RealSense ``.db3``
recording through librealsense's software device: the sim camera's intrinsics, z16 depth in 0.1 mm units (the
D405's default depth units), and the camera pose passed to the run as the ``camera.realsense.extrinsics``
calibration. `robot-stack run` then plays that recording (``camera.kind=realsense``) against the sim arm at the
same scene (``arm.kind=sim``: same task, seed and so layout) with a policy that outputs zeros, recording every
step (raw depth kept). Its recorded observations are compared with the sim env's own observations of the same
steps, which the same arm, safety filter and zero actions reproduce exactly (MuJoCo is deterministic).

Tolerance, height channel: ``DEPTH_UNIT / 2 + 1e-6`` m (0.051 mm). Rounding depth to z16 units moves each
depth reading by at most half a unit; the camera looks straight down, so a point's height moves by the same
amount, and its x/y by at most that times tan(half the field of view), about 0.03 mm against 14 mm cells, so
no point changes cell in this scene (a point that did would be a larger, local difference: the test would
name it). 1e-6 m covers float32 rounding of the intrinsics and heights. Everything that does not come from
depth (the opening channel, the gripper vector, the observed arm state) must be equal. The measured maximum
difference is printed (about 0.04 mm).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")
pytest.importorskip("pyrealsense2")
pytest.importorskip("onnx")

from hardware.realsense import write_recording  # noqa: E402
from robot_stack.cli import main  # noqa: E402
from robot_stack.config import load  # noqa: E402
from robot_stack.jobs.run import RunConfig, make_arm, robot_parts, robot_spec_for  # noqa: E402
from robot_stack.observation import arm_vector  # noqa: E402
from robot_stack.recorder import EpisodeDataset  # noqa: E402
from robot_stack.runtime import SafetyFilter  # noqa: E402
from robot_stack.runtime.synthetic import make_package  # noqa: E402
from robot_stack.specs import CameraIntrinsics, PolicySpec, mismatches  # noqa: E402

SIZE = 32
STEPS = 8
DEPTH_UNIT = 1e-4  # metres per z16 count
HEIGHT_TOL = DEPTH_UNIT / 2 + 1e-6


def zero_policy(path, spec: PolicySpec):
    """A policy package that always answers 0 (the arm holds its pose, the gripper stays as the filter keeps it)."""
    import onnx
    from onnx import numpy_helper

    make_package(path, spec, kind="linear")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name in ("wo", "bo"):
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(path))
    return path


def run_overrides(tmp_path, recording, package, extrinsics) -> list[str]:
    return ["arm.kind=sim", "arm.task=push", "arm.seed=3", "arm.sim.view=gripper", f"arm.sim.heightmap_size={SIZE}",
            "camera.kind=realsense", f"camera.realsense.recording={recording}",
            f"camera.realsense.extrinsics={[[float(v) for v in row] for row in extrinsics]}",
            f"policy.package={package}", "policy.spawn_server=false", "policy.server=",
            "loop.episodes=1", f"loop.max_steps={STEPS}", "loop.realtime=false",
            "record.enabled=true", f"record.path={tmp_path / 'real.zarr'}", "record.keep_depth=true"]


def sim_reference(cfg: RunConfig):
    """The sim env's own observations, depth frames and arm states for the steps the run will take: the run's
    arm (make_arm), reset as the loop resets it, driven by the same safety filter with zero actions."""
    arm = make_arm(cfg)
    try:
        state = arm.reset()
        safety = SafetyFilter(cfg.safety, arm.action_spec)
        safety.reset(gripper_cmd=1.0 if state.gripper > 0.5 else -1.0)
        out = {"obs": [], "depth": [], "arm": []}
        for _ in range(STEPS):
            out["obs"].append({k: v.copy() for k, v in arm.obs.items()})
            out["depth"].append(np.array(arm.base.render(), dtype=np.float32))
            out["arm"].append(arm_vector(state))
            command, _ = safety(np.zeros(arm.action_spec.dim, np.float32), state)
            state = arm.apply(arm.limit_command(command)[0])
        return out, arm.camera().spec, robot_parts(cfg, arm)
    finally:
        arm.close()


def test_run_with_a_realsense_recording_builds_the_sim_envs_observation(tmp_path):
    recording, package = tmp_path / "scene.db3", tmp_path / "zero.onnx"
    # the camera pose is only known once the env is built: load once for the reference, again for the run
    probe = load(RunConfig, "sim_robot", run_overrides(tmp_path, recording, package, np.eye(4)))
    ref, camera, parts = sim_reference(probe)
    assert camera.intrinsics.depth_scale == 1.0  # sim frames are float metres

    intr = camera.intrinsics
    rs_intr = CameraIntrinsics(intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height, DEPTH_UNIT)
    raw = [np.round(d / DEPTH_UNIT).astype(np.uint16) for d in ref["depth"]]
    write_recording(recording, raw, rs_intr, [k / 20 for k in range(STEPS)], fps=20)
    zero_policy(package, PolicySpec(*parts, group="C4", family="synthetic"))

    argv = ["run", "sim_robot", *run_overrides(tmp_path, recording, package, camera.pose)]
    assert main(argv) == 0

    episodes = list(EpisodeDataset(tmp_path / "real.zarr").episodes())
    assert len(episodes) == 1 and len(episodes[0]) == STEPS
    ep = episodes[0]
    assert ep.meta["camera"]["name"] == "realsense" and ep.meta["heightmap"]["view"] == "gripper"
    np.testing.assert_array_equal(ep.extras["depth"], np.stack(raw))  # the recording's frames, one per step
    np.testing.assert_array_equal(ep.extras["arm"], np.stack(ref["arm"]))  # the same ee pose at every step
    assert np.all(ep.action[:, :4] == 0)

    sim_hm = np.stack([o["heightmap"] for o in ref["obs"]])
    real_hm = ep.obs["heightmap"]
    assert real_hm.shape == sim_hm.shape == (STEPS, 2, SIZE, SIZE)
    diff = np.abs(real_hm[:, 0] - sim_hm[:, 0])
    print(f"max |real - sim| height: {diff.max() * 1e3:.4f} mm (tolerance {HEIGHT_TOL * 1e3:.4f} mm)")
    bad = np.argwhere(diff > HEIGHT_TOL)
    assert bad.size == 0, f"{len(bad)} cells differ by more than {HEIGHT_TOL} m, e.g. (step, row, col) " \
                          f"{bad[0].tolist()}: {diff[tuple(bad[0])]:.5f} m"
    assert np.ptp(sim_hm[:, 0]) > 0.05  # the scene is not empty: the cube and table differ in height
    np.testing.assert_array_equal(real_hm[:, 1], sim_hm[:, 1])  # opening channel
    np.testing.assert_array_equal(ep.obs["gripper"], np.stack([o["gripper"] for o in ref["obs"]]))


def test_a_real_robot_section_with_the_gripper_view_matches_a_sim_gripper_view_package():
    """The UR path's spec comes from the robot section: view/extent/size there give the sim package's spec."""
    import sim

    env = sim.make_env("push", view="gripper", heightmap_size=SIZE)
    try:
        package = PolicySpec(*env.policy_spec_parts, group="C4", family="relaxed")
    finally:
        env.close()
    action = package.action
    real = load(RunConfig, "real_ur", ["robot.view=gripper", f"robot.heightmap_size={SIZE}",
                                       f"robot.dpos={action.dpos}", f"robot.dtheta={action.dtheta}"])
    assert mismatches(package, robot_spec_for(robot_parts(real, object()), package)) == []
    workspace_view = load(RunConfig, "real_ur", [f"robot.heightmap_size={SIZE}", f"robot.dpos={action.dpos}",
                                                 f"robot.dtheta={action.dtheta}"])
    diffs = mismatches(package, robot_spec_for(robot_parts(workspace_view, object()), package))
    assert "heightmap.view: expected 'gripper', got 'workspace'" in diffs
