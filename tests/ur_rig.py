"""Shared set-up for the UR driver tests: a ``URArm`` on the controller double (hardware/ur_double.py).

With a ``FakeClock`` nothing runs by itself: ``Rig.advance(s)`` lets ``s`` seconds pass, running the driver's
streaming thread's periods one by one (``arm.stream.tick``) the way the thread would. ``RigKeys`` lets one
control-loop period pass at each poll (the loop polls keys first thing in a period) and can inject events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from hardware.ur import URArm, URConfig
from hardware.ur_double import FakeClock, URControllerDouble
from robot_stack.devices import Camera, DepthFrame
from robot_stack.runtime import ControlLoop, LoopConfig, SafetyConfig, SafetyFilter
from robot_stack.specs import (
    ActionSpec,
    CameraIntrinsics,
    CameraSpec,
    HeightmapSpec,
    ObservationSpec,
    PolicySpec,
    WorkspaceBox,
    look_down_pose,
)

HOST = "10.0.0.7"
HOME = [0.5, 0.0, 0.15]
TCP = [0.0, 0.0, 0.16, 0.0, 0.0, 0.0]
WORKSPACE = WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3)
SAFETY = SafetyConfig(workspace=WORKSPACE, margin=0.02, max_step=0.02, max_dyaw=0.2, gripper_min_periods=0)
ACTION = ActionSpec(dpos=0.05, dtheta=math.pi / 8)


def transform(yaw: float, t: list[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
    m[:3, 3] = t
    return m


BASE_TO_WORLD = transform(math.pi / 2, [0.1, -0.4, -0.02])  # base turned 90 deg, 2 cm below the table top


def tool_down(yaw: float) -> Rotation:
    return Rotation.from_euler("z", yaw) * Rotation.from_euler("x", math.pi)


def base_pose(pos: list[float], rot: Rotation, world_from_base: np.ndarray = BASE_TO_WORLD) -> list[float]:
    world = np.eye(4)
    world[:3, :3], world[:3, 3] = rot.as_matrix(), pos
    base = np.linalg.inv(world_from_base) @ world
    return [*base[:3, 3], *Rotation.from_matrix(base[:3, :3]).as_rotvec()]


def world_of(pose6: list[float], world_from_base: np.ndarray = BASE_TO_WORLD) -> tuple[np.ndarray, Rotation]:
    base = np.eye(4)
    base[:3, :3], base[:3, 3] = Rotation.from_rotvec(pose6[3:]).as_matrix(), pose6[:3]
    world = world_from_base @ base
    return world[:3, 3], Rotation.from_matrix(world[:3, :3])


# parked after the last shift: 40 deg off tool-down, away from home
PARKED = base_pose([0.42, 0.08, 0.22], tool_down(0.3) * Rotation.from_euler("y", math.radians(40)))


class Rig:
    """A ``URArm`` connected to a ``URControllerDouble`` on a fake clock."""

    def __init__(self, start: list[float] | None = None, lag: float = 0.03, polyscope: str = "5.11.1",
                 installed_tcp: list[float] | None = None, wrist3: float = 0.0, **cfg: Any) -> None:
        self.clock = FakeClock()
        # the installation's TCP is the configured one unless a test says otherwise (then the pose is re-expressed)
        self.ctl = URControllerDouble(start or PARKED, clock=self.clock, lag=lag, polyscope=polyscope,
                                      tcp_offset=installed_tcp if installed_tcp is not None else [0.0] * 6,
                                      wrist3=wrist3)
        self.log: list[str] = []
        settings = {"host": HOST, "home": HOME, "base_to_world": BASE_TO_WORLD.tolist(), "tcp_offset": TCP,
                    "payload_mass": 1.2, **cfg}
        self.cfg = URConfig(**settings)
        self.arm = URArm(self.cfg, rtde=self.ctl.modules(), log=self.log.append, clock=self.clock.now,
                         sleep=self.clock.sleep, stream_thread=False)

    @property
    def rate(self) -> float:
        return self.arm.stream.rate_hz

    def advance(self, seconds: float) -> None:
        for _ in range(int(round(seconds * self.rate))):
            self.arm.stream.tick()
            self.clock.sleep(1.0 / self.rate)

    def measured_world(self) -> np.ndarray:
        with self.ctl.lock:
            self.ctl.advance()
            return world_of(self.ctl.meas.as6())[0]

    def commanded_world(self) -> np.ndarray:
        with self.ctl.lock:
            self.ctl.advance()
            return world_of(self.ctl.cmd.as6())[0]


class RigKeys:
    """Operator keys for the loop: each poll lets one loop period pass on the rig, then runs ``events[i]``
    (a callable) and answers ``schedule[i]``; ``samples`` holds (commanded, measured) world positions at each
    poll, i.e. at each period's start."""

    enabled = True

    def __init__(self, rig: Rig, period: float, schedule: dict[int, list[str]] | None = None,
                 events: dict[int, Callable[[], None]] | None = None) -> None:
        self.rig, self.period = rig, period
        self.schedule, self.events = schedule or {}, events or {}
        self.calls = 0
        self.samples: list[tuple[np.ndarray, np.ndarray]] = []

    def poll(self) -> list[str]:
        if self.calls > 0:
            self.rig.advance(self.period)
        self.samples.append((self.rig.commanded_world(), self.rig.measured_world()))
        if self.calls in self.events:
            self.events[self.calls]()
        out = self.schedule.get(self.calls, [])
        self.calls += 1
        return list(out)

    def close(self) -> None:
        pass


class FlatCamera(Camera):
    def __init__(self) -> None:
        self._spec = CameraSpec.create(CameraIntrinsics.from_fovy(45.0, 8, 8), look_down_pose((0.5, 0.0, 0.6)))

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    def read(self) -> DepthFrame:
        return DepthFrame(depth=np.full((8, 8), 0.6, np.float32), spec=self._spec)


class FnPolicy:
    def __init__(self, spec: PolicySpec, fn: Callable[[int], np.ndarray]) -> None:
        self.spec, self.fn, self.calls = spec, fn, 0

    def act(self, obs: dict, timeout: float | None = None) -> np.ndarray:
        self.calls += 1
        return self.fn(self.calls - 1)


class SeeingFilter(SafetyFilter):
    """The safety filter, noting the state it was handed each period."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: list[np.ndarray] = []

    def __call__(self, action, state):
        self.seen.append(np.asarray(state.ee_pos, dtype=np.float64).copy())
        return super().__call__(action, state)


class ListRecorder:
    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.ended: list[dict] = []

    def start_episode(self, meta=None) -> None:
        self.steps = []

    def add_step(self, obs, action, reward, info) -> None:
        self.steps.append(action)

    def end_episode(self, success=None, **meta) -> None:
        self.ended.append({"success": success, **meta})


def spec() -> PolicySpec:
    hm = HeightmapSpec(8, WORKSPACE)
    return PolicySpec(ObservationSpec.create(hm), ACTION, hm)


def loop_for(rig: Rig, policy: Callable[[int], np.ndarray], keys: RigKeys, rate_hz: float = 10.0,
             max_steps: int = 20, recorder: ListRecorder | None = None, episodes: int = 1) -> ControlLoop:
    s = spec()
    size = s.heightmap.size
    return ControlLoop(rig.arm, FlatCamera(), lambda frame: np.zeros((size, size), np.float32), FnPolicy(s, policy),
                       SeeingFilter(SAFETY, ACTION), s,
                       LoopConfig(rate_hz=rate_hz, silent_periods=3, max_steps=max_steps, episodes=episodes,
                                  realtime=False), recorder=recorder, keys=keys, log=rig.log.append)
