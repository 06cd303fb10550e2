"""A sim-backed ``Arm`` and its camera, on the sim developer's gymnasium envs (``sim.make_env``).

The arm takes the same metric ``ArmCommand`` a real driver takes and turns it back into the env's
[-1, 1] action, so the control loop, the safety filter and the recorder run unchanged against sim and
real hardware. Its camera is the env's own depth camera when the env has one (robosuite tasks); envs
that only produce heightmaps (the toy task) get a ``HeightmapCamera`` whose frames carry the heightmap.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import sim
from robot_stack.devices import Arm, ArmCommand, ArmError, ArmState, Camera, CameraError, DepthFrame
from robot_stack.specs import ActionSpec, CameraIntrinsics, CameraSpec, HeightmapSpec, look_down_pose


class HeightmapFrame(DepthFrame):
    """A frame from a sim env that renders heightmaps itself: ``heightmap`` is float32[S, S] metres."""

    heightmap: np.ndarray


class SimArm(Arm):
    """Drive a ``sim.make_env`` env with metric commands; ``state().extra`` carries reward/success/done."""

    def __init__(self, env: Any, seed: int | None = None) -> None:
        self.env = env
        self.base = getattr(env, "unwrapped", env)
        self.obs_spec, self.action_spec, self.hm_spec = env.policy_spec_parts
        self.seed = seed
        self.obs: dict[str, np.ndarray] | None = None
        self._state: ArmState | None = None
        self._gripper_cmd = -1.0
        self._stopped = True
        self._episodes = 0
        self._last_seed: int | None = None
        self._layout: dict | None = None
        self.log: list[tuple[str, ArmCommand | None]] = []  # every call that moved (or held) the arm

    @classmethod
    def from_task(cls, task: str, seed: int | None = None, **cfg: Any) -> SimArm:
        arm = cls(sim.make_env(task, **cfg), seed=seed)
        arm.task, arm.sim_cfg = task, dict(cfg)
        return arm

    def episode_meta(self) -> dict[str, Any]:
        """What ``robot-stack replay`` needs to re-run the current episode: task, reset seed, env config, layout."""
        meta: dict[str, Any] = {"task": getattr(self, "task", ""), "sim": getattr(self, "sim_cfg", {}),
                                "seed": self._last_seed}
        if self._layout is not None:
            meta["layout"] = {k: [float(x) for x in v] for k, v in self._layout.items()}
        return meta

    @property
    def action(self) -> ActionSpec:
        return self.action_spec

    def camera(self) -> Camera:
        """The env's depth camera (frames it already rendered this period) or, for heightmap-only envs, theirs."""
        cam = getattr(self.base, "camera", None)
        return LastFrameCamera(self, cam.spec) if isinstance(cam, Camera) else HeightmapCamera(self)

    def reset(self) -> ArmState:
        seed = None if self.seed is None else self.seed + self._episodes
        self._episodes += 1
        self.obs, info = self.env.reset(seed=seed)
        self._last_seed, self._layout = seed, info.get("layout")
        self._gripper_cmd = -1.0
        self._stopped = False
        self._state = self._make_state(0.0, info, False)
        return self._state

    def state(self) -> ArmState:
        if self._state is None:
            raise ArmError("the sim arm has not been reset")
        return self._state

    def apply(self, command: ArmCommand) -> ArmState:
        self.log.append(("apply", command))
        return self._step(command)

    def hold(self) -> ArmState:
        self.log.append(("hold", None))
        if self._stopped or self._state is None:
            return self._state if self._state is not None else ArmState(ee_pos=np.zeros(3))
        return self._step(ArmCommand(dpos=np.zeros(3), dyaw=0.0, gripper=self._gripper_cmd))

    def stop(self) -> None:
        self.log.append(("stop", None))
        self._stopped = True

    def close(self) -> None:
        self._stopped = True
        if hasattr(self.env, "close"):
            self.env.close()

    def _step(self, command: ArmCommand) -> ArmState:
        if self._stopped:
            raise ArmError("the arm is stopped; reset() before sending motion")
        spec = self.action_spec
        dtheta = command.dyaw / spec.dtheta if spec.dtheta > 0 else 0.0
        action = np.clip(np.array([*(np.asarray(command.dpos, dtype=np.float64) / spec.dpos), dtheta,
                                   command.gripper], dtype=np.float32), -1.0, 1.0)
        self._gripper_cmd = float(command.gripper)
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        self._state = self._make_state(float(reward), info, bool(terminated or truncated))
        return self._state

    def _make_state(self, reward: float, info: dict, done: bool) -> ArmState:
        extra = {"reward": reward, "success": bool(info.get("success", False)), "done": done}
        if hasattr(self.base, "arm_state"):
            state = self.base.arm_state()
            state.extra.update(extra)
            return state
        ws = self.hm_spec.workspace
        grip = np.asarray(self.obs["gripper"], dtype=np.float64)
        ee = getattr(self.base, "ee_pos", None)
        if ee is None:
            half = (ws.x_max - ws.x_min) / 2
            xy = np.asarray(getattr(self.base, "gripper_xy", np.zeros(2))) * half + np.array(ws.center[:2])
            ee = np.array([xy[0], xy[1], ws.z_min + grip[1] * self.hm_spec.max_height])
        yaw = float(getattr(self.base, "ee_yaw", 0.0))
        return ArmState(ee_pos=np.asarray(ee, dtype=np.float64), ee_yaw=yaw, gripper=float(grip[0]),
                        timestamp=time.monotonic(), extra=extra)


class LastFrameCamera(Camera):
    """The sim env's depth camera, without rendering twice: the frame the env rendered at its last step."""

    def __init__(self, arm: SimArm, spec: CameraSpec) -> None:
        self.arm, self._spec, self.lost, self._index = arm, spec, False, 0

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    def read(self) -> DepthFrame:
        depth = self.arm.base.render()
        if self.lost or depth is None:
            raise CameraError("sim camera disconnected" if self.lost else "the sim env has not rendered a frame")
        self._index += 1
        return DepthFrame(depth=np.asarray(depth, dtype=np.float32), spec=self._spec, timestamp=time.monotonic(),
                          index=self._index - 1)


class HeightmapCamera(Camera):
    """The camera of an env that renders heightmaps: frames carry the env's current heightmap."""

    def __init__(self, arm: SimArm) -> None:
        self.arm = arm
        self.lost = False
        hm: HeightmapSpec = arm.hm_spec
        size = hm.size
        intr = CameraIntrinsics.from_fovy(45.0, size, size, depth_scale=1.0)
        cx, cy, _ = hm.workspace.center
        self._spec = CameraSpec.create(intr, look_down_pose((cx, cy, hm.workspace.z_max + 0.5)), "sim_heightmap")
        self._index = 0

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    def read(self) -> HeightmapFrame:
        if self.lost:
            raise CameraError("sim camera disconnected")
        if self.arm.obs is None:
            raise CameraError("the sim env has not been reset")
        hm = np.asarray(self.arm.obs["heightmap"], dtype=np.float32)[0]
        frame = HeightmapFrame(depth=hm, spec=self._spec, timestamp=time.monotonic(), index=self._index)
        frame.heightmap = hm
        self._index += 1
        return frame


def projector_for(camera: Camera, heightmap: HeightmapSpec):
    """Frames -> heightmap [S, S]: ``HeightmapProjector`` for depth cameras, pass-through for heightmap frames."""
    if isinstance(camera, HeightmapCamera):
        return lambda frame: frame.heightmap
    from robot_stack.perception import HeightmapProjector

    return HeightmapProjector(camera.spec, heightmap)
