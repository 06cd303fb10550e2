"""A Universal Robots arm through ``ur_rtde`` (optional extra ``ur``): the same ``Arm`` interface as the sim arm.

Each control period becomes one ``servoL`` towards the current TCP pose + the (already filtered) ``dpos``
and ``dyaw``, with the tool kept pointing down. ``hold`` re-sends the current pose, ``stop`` calls
``servoStop`` + ``speedStop``. The gripper is a digital output (a pneumatic or I/O-driven gripper); wire
another gripper by overriding ``_set_gripper``. The stack's world frame is the robot base frame
translated/rotated by ``base_to_world`` (4x4, metres) as measured at calibration (docs/deploy.md).
Untested against hardware here: no UR controller or URSim was available when it was written.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from robot_stack.devices import Arm, ArmCommand, ArmError, ArmState


def _identity() -> list[list[float]]:
    return [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


@dataclass
class URConfig:
    host: str = "192.168.1.10"
    frequency: float = 500.0         # RTDE frequency (e-series 500, CB3 125)
    period: float = 0.1              # control period the servoL targets are spread over (1 / rate_hz)
    lookahead: float = 0.1           # servoL lookahead time [0.03, 0.2] s
    gain: float = 300.0              # servoL gain [100, 2000]
    speed: float = 0.25              # m/s for moveL to home
    acceleration: float = 0.5        # m/s^2
    home: list[float] = field(default_factory=lambda: [0.5, 0.0, 0.15])  # world-frame TCP home position
    gripper_output: int = 0          # standard digital output driving the gripper (-1: no gripper)
    gripper_close_high: bool = True  # output level that closes the gripper
    base_to_world: list[list[float]] = field(default_factory=_identity)


def _import_rtde():
    try:
        import rtde_control
        import rtde_io
        import rtde_receive
    except ImportError as exc:
        raise ArmError("the UR driver needs ur_rtde: pip install '.[ur]' (see docs/deploy.md)") from exc
    return rtde_control, rtde_receive, rtde_io


def _rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(rv))
    if angle < 1e-12:
        return np.eye(3)
    k = rv / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def _matrix_to_rotvec(m: np.ndarray) -> np.ndarray:
    angle = math.acos(max(-1.0, min(1.0, (np.trace(m) - 1) / 2)))
    if angle < 1e-9:
        return np.zeros(3)
    if abs(angle - math.pi) < 1e-6:
        axis = np.sqrt(np.maximum((np.diag(m) + 1) / 2, 0))
        axis[1] = math.copysign(axis[1], m[0, 1] + m[1, 0]) if axis[0] > 0 else axis[1]
        axis[2] = math.copysign(axis[2], m[0, 2] + m[2, 0]) if axis[0] > 0 else axis[2]
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]) / (2 * math.sin(angle))
    return axis * angle


def _down_rotation(yaw: float) -> np.ndarray:
    """Tool z pointing down (world -z), rotated by ``yaw`` about world z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])


class URArm(Arm):
    def __init__(self, cfg: URConfig) -> None:
        rtde_control, rtde_receive, rtde_io = _import_rtde()
        self.cfg = cfg
        self.world_from_base = np.asarray(cfg.base_to_world, dtype=np.float64)
        self.base_from_world = np.linalg.inv(self.world_from_base)
        try:
            self.control = rtde_control.RTDEControlInterface(cfg.host, cfg.frequency)
            self.receive = rtde_receive.RTDEReceiveInterface(cfg.host, cfg.frequency)
            self.io = rtde_io.RTDEIOInterface(cfg.host)
        except RuntimeError as exc:
            raise ArmError(f"cannot connect to the UR controller at {cfg.host}: {exc}") from exc
        self._gripper = -1.0

    # ---- frames ------------------------------------------------------------------------------------------
    def _world_pose(self) -> tuple[np.ndarray, float]:
        tcp = np.asarray(self.receive.getActualTCPPose(), dtype=np.float64)
        if tcp.shape != (6,) or not np.all(np.isfinite(tcp)):
            raise ArmError(f"UR returned an unusable TCP pose: {tcp}")
        base = np.eye(4)
        base[:3, :3], base[:3, 3] = _rotvec_to_matrix(tcp[3:]), tcp[:3]
        world = self.world_from_base @ base
        yaw = math.atan2(world[1, 0], world[0, 0])
        return world[:3, 3], yaw

    def _base_target(self, pos: np.ndarray, yaw: float) -> list[float]:
        world = np.eye(4)
        world[:3, :3], world[:3, 3] = _down_rotation(yaw), pos
        base = self.base_from_world @ world
        return [*base[:3, 3].tolist(), *_matrix_to_rotvec(base[:3, :3]).tolist()]

    # ---- Arm -----------------------------------------------------------------------------------------------
    def state(self) -> ArmState:
        pos, yaw = self._world_pose()
        return ArmState(ee_pos=pos, ee_yaw=yaw, gripper=1.0 if self._gripper > 0 else 0.0, timestamp=time.time())

    def reset(self) -> ArmState:
        _, yaw = self._world_pose()
        self._set_gripper(-1.0)
        if not self.control.moveL(self._base_target(np.asarray(self.cfg.home), yaw), self.cfg.speed,
                                  self.cfg.acceleration):
            raise ArmError("UR moveL to home failed (protective stop? program not running?)")
        return self.state()

    def apply(self, command: ArmCommand) -> ArmState:
        pos, yaw = self._world_pose()
        target = self._base_target(pos + np.asarray(command.dpos, dtype=np.float64), yaw + command.dyaw)
        self._servo(target)
        if (command.gripper > 0) != (self._gripper > 0):
            self._set_gripper(command.gripper)
        return self.state()

    def hold(self) -> ArmState:
        pos, yaw = self._world_pose()
        self._servo(self._base_target(pos, yaw))
        return self.state()

    def stop(self) -> None:
        self.control.servoStop()
        self.control.speedStop()

    def close(self) -> None:
        try:
            self.stop()
            self.control.stopScript()
        finally:
            self.control.disconnect()
            self.receive.disconnect()

    def _servo(self, target: list[float]) -> None:
        if not self.control.servoL(target, 0.0, 0.0, self.cfg.period, self.cfg.lookahead, self.cfg.gain):
            raise ArmError("UR servoL refused the target (protective stop or lost connection)")

    def _set_gripper(self, command: float) -> None:
        self._gripper = 1.0 if command > 0 else -1.0
        if self.cfg.gripper_output >= 0:
            level = (self._gripper > 0) == self.cfg.gripper_close_high
            self.io.setStandardDigitalOut(self.cfg.gripper_output, level)
