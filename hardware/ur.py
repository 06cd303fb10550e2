"""A Universal Robots arm through ``ur_rtde`` (optional extra ``ur``): the same ``Arm`` interface as the sim arm.

Each control period becomes one ``servoL`` towards the pose this driver last reported (the pose the safety
filter checked the command against) + the (already filtered) ``dpos`` and ``dyaw``, with the tool kept
pointing down. ``hold`` re-sends the current pose, ``stop`` calls ``servoStop`` + ``speedStop``, ``close``
also stops the control script and disconnects. The gripper is a digital output (a pneumatic or I/O-driven
gripper); wire another gripper by overriding ``_set_gripper``. The stack's world frame is the robot base
frame translated/rotated by ``base_to_world`` (4x4, metres) as measured at calibration (docs/deploy.md).
Every failure of the interface (an exception, a refused command, a lost connection) is an ``ArmError``.
Tested against in-process stand-ins for the ur_rtde interfaces (tests/test_ur.py), not against a UR
controller or URSim.

Wrist 3 is kept within ``wrist3_limit_deg`` of zero: the tool's yaw adds up over a long episode, and a wrist
driven into its joint limit faults the controller (protective stop). Before each ``servoL`` the driver reads the
joints (``getActualQ``) and shortens the yaw step so that wrist 3 ends inside the limit; a step back towards
zero is never shortened. The TCP's z axis is wrist 3's axis (a TCP offset along the flange), so with the tool
pointing down wrist 3 turns by -dyaw. Translations turn it too: the base joint swings as the TCP moves around
the base, and wrist 3 follows to hold the tool's yaw, so the margin between this limit and the wrist's own
joint limit must cover the base joint's swing over the workspace.

One joint reading a period: the loop calls ``limit_command`` and then ``apply``. ``apply`` reuses the reading
``limit_command`` took if it is the very next call on the arm and comes within one ``period``; any other call
drops it, and without it ``apply`` reads the joints itself. Either way ``apply`` limits the command it is given,
so a caller that skips ``limit_command``, or changes the command in between, cannot pass the limit.

``reset`` unwinds wrist 3, so an episode does not start near the limit where the last one ended: a ``moveL``
to ``home`` keeping the tool's yaw, then, at home (in free space above the table), a ``moveJ`` that turns
wrist 3 alone to ``home_wrist3_deg``; with the TCP on wrist 3's axis the TCP stays at home.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from robot_stack.devices import Arm, ArmCommand, ArmError, ArmState

# ur_rtde's own range checks (rtde_control_interface.h); values outside them raise inside servoL/moveL
LOOKAHEAD_RANGE = (0.03, 0.2)
GAIN_RANGE = (100.0, 2000.0)
MAX_SPEED = 1.0          # m/s for the move to home (the oldest ur_rtde's moveL limit)
MAX_ACCELERATION = 2.0   # m/s^2
MAX_JOINT_SPEED = 1.0    # rad/s for the wrist-3 moveJ (the oldest ur_rtde's moveJ limits)
MAX_JOINT_ACCELERATION = 2.0  # rad/s^2


def _identity() -> list[list[float]]:
    return [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


@dataclass
class URConfig:
    """``arm.ur`` in a launch file. The move home (``reset``): ``moveL`` to ``home`` at ``speed`` /
    ``acceleration`` with the tool's yaw kept, then ``moveJ`` of wrist 3 alone to ``home_wrist3_deg`` (degrees,
    within +-``wrist3_limit_deg``; 0 leaves the most room both ways) at ``joint_speed`` rad/s and
    ``joint_acceleration`` rad/s^2. ``wrist3_limit_deg`` bounds wrist 3 during an episode (module docstring)."""

    host: str = "192.168.1.10"
    frequency: float = 500.0         # RTDE frequency (e-series 500, CB3 125)
    period: float = 0.1              # control period the servoL targets are spread over (1 / rate_hz)
    lookahead: float = 0.1           # servoL lookahead time [0.03, 0.2] s
    gain: float = 300.0              # servoL gain [100, 2000]
    speed: float = 0.25              # m/s for moveL to home
    acceleration: float = 0.5        # m/s^2
    home: list[float] = field(default_factory=lambda: [0.5, 0.0, 0.15])  # world-frame TCP home position
    gripper_output: int = 0          # standard digital output 0-7 driving the gripper (-1: no gripper)
    gripper_close_high: bool = True  # output level that closes the gripper
    base_to_world: list[list[float]] = field(default_factory=_identity)
    wrist3_limit_deg: float = 270.0  # yaw steps keep wrist 3 within +- this (module docstring: the margin)
    home_wrist3_deg: float = 0.0     # reset turns wrist 3 back to this angle at home
    joint_speed: float = 0.5         # rad/s for that moveJ
    joint_acceleration: float = 1.0  # rad/s^2

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host: the UR controller's address is empty")
        _check_range("frequency", self.frequency, 1.0, 500.0, " Hz")
        _check_range("period", self.period, 1e-3, 10.0, " s")
        _check_range("lookahead", self.lookahead, *LOOKAHEAD_RANGE, " s")
        _check_range("gain", self.gain, *GAIN_RANGE, "")
        _check_range("speed", self.speed, 1e-6, MAX_SPEED, " m/s")
        _check_range("acceleration", self.acceleration, 1e-6, MAX_ACCELERATION, " m/s^2")
        if len(self.home) != 3 or not all(math.isfinite(v) for v in self.home):
            raise ValueError(f"home must be a finite world position [x, y, z] in metres, got {self.home}")
        if not -1 <= self.gripper_output <= 7:
            raise ValueError(f"gripper_output must be a standard digital output 0-7 or -1, got {self.gripper_output}")
        _check_rigid(self.base_to_world)
        _check_range("wrist3_limit_deg", self.wrist3_limit_deg, 1.0, 360.0, " deg")
        limit = self.wrist3_limit_deg
        _check_range("home_wrist3_deg", self.home_wrist3_deg, -limit, limit, " deg (+-wrist3_limit_deg)")
        _check_range("joint_speed", self.joint_speed, 1e-6, MAX_JOINT_SPEED, " rad/s")
        _check_range("joint_acceleration", self.joint_acceleration, 1e-6, MAX_JOINT_ACCELERATION, " rad/s^2")


def _check_range(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}]{unit}, got {value!r}")


def _check_rigid(matrix: list[list[float]]) -> None:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"base_to_world must be a finite 4x4 matrix, got shape {m.shape}")
    rot = m[:3, :3]
    if (not np.allclose(m[3], [0, 0, 0, 1]) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3)
            or np.linalg.det(rot) < 0):
        raise ValueError("base_to_world must be a rigid transform (rotation + translation, last row 0 0 0 1)")


def _import_rtde() -> tuple[Any, Any, Any]:
    try:
        import rtde_control
        import rtde_io
        import rtde_receive
    except ImportError as exc:
        raise ArmError("the UR driver needs ur_rtde: pip install '.[ur]' (see docs/deploy.md)") from exc
    return rtde_control, rtde_receive, rtde_io


def _rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(rv).as_matrix()


def _matrix_to_rotvec(m: np.ndarray) -> np.ndarray:
    """Axis-angle (UR's pose format) of a rotation matrix; exact at the half-turn of a tool pointing down, where
    a hand-rolled ``acos(trace)`` conversion loses the axis."""
    return Rotation.from_matrix(m).as_rotvec()


def wrist3_dyaw(wrist3: float, dyaw: float, limit: float) -> float:
    """The part of the yaw step ``dyaw`` that keeps wrist 3 (now at ``wrist3``, turning by -dyaw) within
    +-``limit``; all radians. A step that turns wrist 3 back towards zero is kept whole, even from beyond."""
    turn = min(max(-dyaw, min(0.0, -limit - wrist3)), max(0.0, limit - wrist3))
    return -turn


def _down_rotation(yaw: float) -> np.ndarray:
    """Tool z pointing down (world -z), rotated by ``yaw`` about world z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])


class URArm(Arm):
    """``rtde``: the (rtde_control, rtde_receive, rtde_io) modules; ur_rtde's own when None (tests pass stand-ins).
    ``log`` gets the wrist-3 clip notice, once per episode; ``clock`` (seconds) ages the joint reading that
    ``limit_command`` leaves for ``apply``."""

    def __init__(self, cfg: URConfig, rtde: tuple[Any, Any, Any] | None = None,
                 log: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic) -> None:
        rtde_control, rtde_receive, rtde_io = rtde if rtde is not None else _import_rtde()
        self.cfg = cfg
        self.log = log
        self.clock = clock
        self._wrist3_reading: tuple[float, float] | None = None  # (wrist 3, clock) from limit_command, for apply
        self.world_from_base = np.asarray(cfg.base_to_world, dtype=np.float64)
        self.base_from_world = np.linalg.inv(self.world_from_base)
        self.control = self.receive = self.io = None
        try:
            self.control = rtde_control.RTDEControlInterface(cfg.host, cfg.frequency)
            self.receive = rtde_receive.RTDEReceiveInterface(cfg.host, cfg.frequency)
            self.io = rtde_io.RTDEIOInterface(cfg.host)
        except Exception as exc:  # ur_rtde raises RuntimeError, boost errors arrive as RuntimeError or OSError
            self._disconnect()
            raise ArmError(f"cannot connect to the UR controller at {cfg.host}: {exc}") from exc
        self._gripper = -1.0
        self._pose: tuple[np.ndarray, float] | None = None  # world pose of the last state handed out
        self._closed = False
        self._wrist3_logged = False

    # ---- frames ------------------------------------------------------------------------------------------
    def _world_pose(self) -> tuple[np.ndarray, float]:
        tcp = self._read6("getActualTCPPose", self.receive.getActualTCPPose, "TCP pose")
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
        self._begin()
        pos, yaw = self._world_pose()
        return ArmState(ee_pos=pos, ee_yaw=yaw, gripper=1.0 if self._gripper > 0 else 0.0, timestamp=time.time())

    def reset(self) -> ArmState:
        """Gripper open, ``moveL`` home keeping the yaw, ``moveJ`` of wrist 3 alone to ``home_wrist3_deg``.
        A failed move is an ``ArmError`` saying where the arm was left."""
        self._begin()
        self._pose = None  # a pose from before the move home is no base for a servo step, even if the move fails
        self._wrist3_logged = False
        _, yaw = self._world_pose()
        self._set_gripper(-1.0)
        # moveL is not a servo command: leave servo mode first
        self._call("servoStop", self.control.servoStop)
        target = self._base_target(np.asarray(self.cfg.home, dtype=np.float64), yaw)
        self._move("moveL to home", self.control.moveL, target, self.cfg.speed, self.cfg.acceleration,
                   "the arm did not reach home, wrist 3 not unwound")
        self._unwind_wrist3()
        return self._report()

    def apply(self, command: ArmCommand) -> ArmState:
        reading = self._wrist3_reading
        self._begin()
        dpos = np.asarray(command.dpos, dtype=np.float64)
        if dpos.shape != (3,) or not np.all(np.isfinite(dpos)) or not math.isfinite(command.dyaw):
            raise ArmError(f"refusing a non-finite or malformed command: dpos={command.dpos}, dyaw={command.dyaw}")
        command, _ = self._limit(command, self._wrist3_for_apply(reading))
        # relative to the pose the safety filter saw, not a fresher reading: keeps its box and step guarantees
        pos, yaw = self._pose if self._pose is not None else self._world_pose()
        self._servo(self._base_target(pos + dpos, yaw + command.dyaw))
        if (command.gripper > 0) != (self._gripper > 0):
            self._set_gripper(command.gripper)
        return self._report()

    def limit_command(self, command: ArmCommand) -> tuple[ArmCommand, bool]:
        """The yaw step shortened so that wrist 3 stays within +-``wrist3_limit_deg``; the joint reading is left
        for the next call if that is ``apply`` (module docstring)."""
        self._begin()
        wrist3 = self._read_wrist3()
        self._wrist3_reading = (wrist3, self.clock())
        return self._limit(command, wrist3)

    def _limit(self, command: ArmCommand, wrist3: float) -> tuple[ArmCommand, bool]:
        limit = math.radians(self.cfg.wrist3_limit_deg)
        dyaw = wrist3_dyaw(wrist3, command.dyaw, limit) if math.isfinite(command.dyaw) else command.dyaw
        if dyaw == command.dyaw:
            return command, False
        if not self._wrist3_logged:
            self._wrist3_logged = True
            self.log(f"UR wrist 3 at {math.degrees(wrist3):.1f} deg: yaw steps that would turn it past "
                     f"+-{self.cfg.wrist3_limit_deg:g} deg are shortened (noted once per episode)")
        return replace(command, dyaw=dyaw), True

    def hold(self) -> ArmState:
        self._begin()
        pos, yaw = self._world_pose()
        self._servo(self._base_target(pos, yaw))
        return self._report()

    def stop(self) -> None:
        self._begin()
        self._pose = None
        self._call("servoStop", self.control.servoStop)
        self._call("speedStop", self.control.speedStop)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.stop()
            self._call("stopScript", self.control.stopScript)
        finally:
            self._closed = True
            self._disconnect()

    # ---- helpers -------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        """Every public call starts here; any call drops the joint reading left for the next ``apply``."""
        self._wrist3_reading = None
        self._check_open()

    def _read_wrist3(self) -> float:
        return float(self._read6("getActualQ", self.receive.getActualQ, "joint positions")[5])

    def _wrist3_for_apply(self, reading: tuple[float, float] | None) -> float:
        """``limit_command``'s reading when it was the arm's last call and is at most a period old, else a new one."""
        if reading is not None and self.clock() - reading[1] <= self.cfg.period:
            return reading[0]
        return self._read_wrist3()

    def _unwind_wrist3(self) -> None:
        q = self._read6("getActualQ", self.receive.getActualQ, "joint positions")
        wound = math.degrees(q[5])
        q[5] = math.radians(self.cfg.home_wrist3_deg)  # only joint 6 turns: the TCP, on its axis, stays at home
        self._move(f"moveJ unwinding wrist 3 to {self.cfg.home_wrist3_deg:g} deg", self.control.moveJ, q.tolist(),
                   self.cfg.joint_speed, self.cfg.joint_acceleration,
                   f"the arm is at home, wrist 3 not unwound (it was at {wound:.1f} deg)")

    def _move(self, what: str, fn: Callable[..., Any], target: list[float], speed: float, acceleration: float,
              left: str) -> None:
        """One blocking move of ``reset``; ``left`` says where a failure leaves the arm."""
        try:
            done = self._call(what, fn, target, speed, acceleration)
        except ArmError as exc:
            raise ArmError(f"{exc}; {left}") from exc.__cause__
        if not done:
            raise ArmError(f"UR {what} failed (protective stop? program not running?); {left}")

    def _report(self) -> ArmState:
        state = self.state()
        self._pose = (state.ee_pos.copy(), state.ee_yaw)
        return state

    def _read6(self, what: str, fn: Callable[[], Any], name: str) -> np.ndarray:
        """Six finite numbers from the receive interface, checked connected first: after a lost connection
        ur_rtde keeps returning the last values it received."""
        if not self._call("isConnected", self.receive.isConnected):
            raise ArmError(f"lost the RTDE connection to the UR controller at {self.cfg.host}")
        value = self._call(what, fn)
        try:
            vec = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            vec = np.empty(0)
        if vec.shape != (6,) or not np.all(np.isfinite(vec)):
            raise ArmError(f"UR {what} returned unusable {name}: {value!r}")
        return vec

    def _servo(self, target: list[float]) -> None:
        if not self._call("isConnected", self.control.isConnected):
            raise ArmError(f"lost the RTDE control connection to the UR controller at {self.cfg.host}")
        cfg = self.cfg
        if not self._call("servoL", self.control.servoL, target, 0.0, 0.0, cfg.period, cfg.lookahead, cfg.gain):
            raise ArmError("UR servoL refused the target (protective stop or lost connection)")

    def _set_gripper(self, command: float) -> None:
        self._gripper = 1.0 if command > 0 else -1.0
        if self.cfg.gripper_output >= 0:
            level = (self._gripper > 0) == self.cfg.gripper_close_high
            if not self._call("setStandardDigitalOut", self.io.setStandardDigitalOut, self.cfg.gripper_output, level):
                raise ArmError(f"UR refused to set digital output {self.cfg.gripper_output} (the gripper)")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # RuntimeError (connection, state), ValueError (ur_rtde's range checks), ...
            raise ArmError(f"UR {what} failed (controller {self.cfg.host}): {type(exc).__name__}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ArmError("the UR arm is closed")

    def _disconnect(self) -> None:
        for iface in (self.control, self.receive, self.io):
            disconnect = getattr(iface, "disconnect", None)  # older ur_rtde has no RTDEIOInterface.disconnect
            if disconnect is None:
                continue
            try:
                disconnect()
            except Exception:  # closing anyway: the other interfaces must still be released
                pass
