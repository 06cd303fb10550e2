"""A Universal Robots arm through ``ur_rtde`` (optional extra ``ur``): the same ``Arm`` interface as the sim arm.

**Start.** Connecting moves nothing. It sets the configured TCP and payload (``tcp_mode: set``) or refuses to
run when the controller's active TCP differs from the configured one (``tcp_mode: check``), and sets the RTDE
watchdog. Nothing servoes before the first ``reset``; before it, ``hold`` only reads the pose. ``reset`` says
what it will do, then moves home at ``speed`` (``moveL`` keeping the tool's yaw, tool down), and turns wrist 3
alone back to ``home_wrist3_deg`` (``moveJ``); both moves are asynchronous and polled, so the watchdog stays
fed and a safety stop during them is seen at once.

**Servoing.** A streaming thread (hardware/ur_stream.py) sends interpolated ``servoL`` targets at the
controller's rate (``time = 1/f``), each control period's segment starting from the last pose it sent. The
control loop reads the measured pose at the start of each period (``measure_each_period``); ``apply`` steps
from that pose, and, once the loop has bound its safety limits (``bind_safety``), the target is also kept
within ``max_step`` (``max_dyaw``) of the pose last commanded, so neither the commanded nor the measured pose
ever moves more than a step in a period (``limit_step``). ``hold`` re-sends the measured pose unchanged.

**Safety.** Every call reads the safety mode. A protective or safeguard stop is a ``URSafetyStop`` with
``safety_stop = "protective_stop"`` (the loop ends the episode, saved, and offers ``recover``: the dashboard's
unlock); an emergency stop, a violation or a fault is ``"emergency_stop"`` (the loop stops everything). Any
other failure of the interface is an ``ArmError``.

**Watchdog.** ``setWatchdog(watchdog_hz)`` at connect; the stream kicks it every controller period, but
while servoing only as long as the loop calls the arm at least every ``stall_timeout`` s. A killed process
stops the arm within ``1/watchdog_hz`` s, a hung loop within ``stall_timeout + 1/watchdog_hz`` s. A control
script stopped that way (or by a protective stop) is uploaded again by the next ``reset`` or ``recover``,
with the TCP, payload and watchdog set again.

Wrist 3 is kept within ``wrist3_limit_deg`` of zero: the tool's yaw adds up over a long episode, and a wrist
driven into its joint limit faults the controller. Before each step the driver reads the joints
(``getActualQ``) and shortens the yaw step so that wrist 3 ends inside the limit; a step back towards zero is
never shortened (``limit_command`` leaves its reading for an ``apply`` that follows it within a period).
The stack's world frame is the robot base frame moved by ``base_to_world`` (docs/deploy.md). Tested against
the controller double in hardware/ur_double.py, not against a UR controller or URSim.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy.spatial.transform import Rotation

from hardware.grippers import DigitalOutputGripper, Gripper, RobotiqConfig, RobotiqGripper
from hardware.ur_stream import ServoStream
from robot_stack.devices import Arm, ArmCommand, ArmError, ArmState

# ur_rtde's own range checks (rtde_control_interface.h); values outside them raise inside servoL/moveL
LOOKAHEAD_RANGE = (0.03, 0.2)
GAIN_RANGE = (100.0, 2000.0)
MAX_SPEED = 1.0          # m/s for the move to home (the oldest ur_rtde's moveL limit)
MAX_ACCELERATION = 2.0   # m/s^2
MAX_JOINT_SPEED = 1.0    # rad/s for the wrist-3 moveJ (the oldest ur_rtde's moveJ limits)
MAX_JOINT_ACCELERATION = 2.0  # rad/s^2
SAFETY_MODES = {1: "NORMAL", 2: "REDUCED", 3: "PROTECTIVE_STOP", 4: "RECOVERY", 5: "SAFEGUARD_STOP",
                6: "SYSTEM_EMERGENCY_STOP", 7: "ROBOT_EMERGENCY_STOP", 8: "VIOLATION", 9: "FAULT",
                10: "VALIDATE_JOINT_ID", 11: "UNDEFINED_SAFETY_MODE", 12: "AUTOMATIC_MODE_SAFEGUARD_STOP",
                13: "SYSTEM_THREE_POSITION_ENABLING_STOP"}
RUNNING_MODES = (1, 2)
UNLOCKABLE_MODES = (3, 5, 12, 13)  # cleared by the operator (unlock, or resetting the safeguard)
MOVE_POLL = 0.01  # s between looks at an asynchronous move


def _identity() -> list[list[float]]:
    return [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


@dataclass
class URConfig:
    """``arm.ur`` in a launch file. ``tcp_offset`` (flange -> TCP, [x, y, z, rx, ry, rz] in m and rad) and
    ``payload_mass`` (kg) must be given: the safety box and the observed height refer to the TCP. The move home
    (``reset``): ``moveL`` to ``home`` at ``speed`` / ``acceleration`` with the tool's yaw kept, then ``moveJ``
    of wrist 3 alone to ``home_wrist3_deg`` at ``joint_speed`` / ``joint_acceleration``."""

    host: str = "192.168.1.10"
    frequency: float = 0.0           # RTDE and streaming rate; 0: the controller's (500 e-series, 125 CB3)
    period: float = 0.1              # control period: one loop step's segment is spread over it (1 / rate_hz)
    lookahead: float = 0.1           # servoL lookahead time [0.03, 0.2] s
    gain: float = 300.0              # servoL gain [100, 2000]
    speed: float = 0.25              # m/s for moveL to home
    acceleration: float = 0.5        # m/s^2
    home: list[float] = field(default_factory=lambda: [0.5, 0.0, 0.15])  # world-frame TCP home position
    tcp_offset: list[float] | None = None   # flange -> TCP pose of the gripper's fingertips (required)
    payload_mass: float | None = None       # kg carried at the flange (required; 0 for nothing)
    payload_cog: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # m from the flange
    tcp_mode: Literal["set", "check"] = "set"  # set TCP and payload at connect, or refuse a different TCP
    watchdog_hz: float = 10.0        # the controller stops the script when no command comes for 1/this s
    stall_timeout: float = 0.5       # s without a call from the loop before the stream stops feeding it
    rt_priority: int = 80            # SCHED_FIFO priority of the streaming thread (1-99; 0: normal scheduling)
    move_timeout: float = 5.0        # s allowed beyond a reset move's expected duration
    gripper: Literal["digital", "robotiq"] = "digital"
    gripper_output: int = 0          # digital: standard digital output 0-7 driving the gripper (-1: none)
    gripper_close_high: bool = True  # digital: output level that closes the gripper
    robotiq: RobotiqConfig = field(default_factory=RobotiqConfig)
    base_to_world: list[list[float]] = field(default_factory=_identity)
    wrist3_limit_deg: float = 270.0  # yaw steps keep wrist 3 within +- this (module docstring: the margin)
    home_wrist3_deg: float = 0.0     # reset turns wrist 3 back to this angle at home
    joint_speed: float = 0.5         # rad/s for that moveJ
    joint_acceleration: float = 1.0  # rad/s^2

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host: the UR controller's address is empty")
        if isinstance(self.robotiq, dict):
            self.robotiq = RobotiqConfig(**self.robotiq)
        if self.frequency != 0.0:
            _check_range("frequency", self.frequency, 125.0, 500.0, " Hz (or 0: the controller's own)")
        _check_range("period", self.period, 1e-3, 10.0, " s")
        _check_range("lookahead", self.lookahead, *LOOKAHEAD_RANGE, " s")
        _check_range("gain", self.gain, *GAIN_RANGE, "")
        _check_range("speed", self.speed, 1e-6, MAX_SPEED, " m/s")
        _check_range("acceleration", self.acceleration, 1e-6, MAX_ACCELERATION, " m/s^2")
        if len(self.home) != 3 or not all(math.isfinite(v) for v in self.home):
            raise ValueError(f"home must be a finite world position [x, y, z] in metres, got {self.home}")
        self._check_tcp_and_payload()
        _check_range("watchdog_hz", self.watchdog_hz, 1.0, 500.0, " Hz")
        _check_range("stall_timeout", self.stall_timeout, 0.01, 60.0, " s")
        if not (isinstance(self.rt_priority, int) and 0 <= self.rt_priority <= 99):
            raise ValueError(f"rt_priority must be an integer in [0, 99] (0: normal scheduling), got "
                             f"{self.rt_priority!r}")
        _check_range("move_timeout", self.move_timeout, 0.1, 600.0, " s")
        if not -1 <= self.gripper_output <= 7:
            raise ValueError(f"gripper_output must be a standard digital output 0-7 or -1, got {self.gripper_output}")
        _check_rigid(self.base_to_world)
        _check_range("wrist3_limit_deg", self.wrist3_limit_deg, 1.0, 360.0, " deg")
        limit = self.wrist3_limit_deg
        _check_range("home_wrist3_deg", self.home_wrist3_deg, -limit, limit, " deg (+-wrist3_limit_deg)")
        _check_range("joint_speed", self.joint_speed, 1e-6, MAX_JOINT_SPEED, " rad/s")
        _check_range("joint_acceleration", self.joint_acceleration, 1e-6, MAX_JOINT_ACCELERATION, " rad/s^2")

    def _check_tcp_and_payload(self) -> None:
        tcp = self.tcp_offset
        if tcp is None or len(tcp) != 6 or not all(math.isfinite(v) for v in tcp):
            raise ValueError("tcp_offset must be the flange -> TCP pose [x, y, z, rx, ry, rz] (m, rad) of your "
                             f"gripper's fingertips, got {tcp}")
        if self.payload_mass is None or not (math.isfinite(self.payload_mass) and 0 <= self.payload_mass <= 20):
            raise ValueError(f"payload_mass must be the mass at the flange in kg (0-20), got {self.payload_mass}")
        if len(self.payload_cog) != 3 or not all(math.isfinite(v) for v in self.payload_cog):
            raise ValueError(f"payload_cog must be [x, y, z] in m from the flange, got {self.payload_cog}")


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


class URSafetyStop(ArmError):
    """The controller is in a safety stop; ``safety_stop`` is "protective_stop" (the operator can clear it)
    or "emergency_stop" (everything stops)."""

    def __init__(self, message: str, safety_stop: str) -> None:
        super().__init__(message)
        self.safety_stop = safety_stop


def _import_rtde() -> tuple[Any, Any, Any, Any]:
    try:
        import dashboard_client
        import rtde_control
        import rtde_io
        import rtde_receive
    except ImportError as exc:
        raise ArmError("the UR driver needs ur_rtde: pip install '.[ur]' (see docs/deploy.md)") from exc
    return rtde_control, rtde_receive, rtde_io, dashboard_client


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


def limit_step(target: np.ndarray, measured: np.ndarray, commanded: np.ndarray, max_step: float) -> np.ndarray:
    """``target`` (within ``max_step`` of ``measured`` and inside the box: the safety filter's output) moved
    towards ``commanded`` until it is within ``max_step`` of both; works on rows. Moving along the segment to
    ``commanded`` (inside the box) stays inside the box. When the arm lags its command by more than a step
    that is not enough, and the target is the point a step from ``commanded`` towards ``measured``."""
    target, measured, commanded = (np.asarray(a, dtype=np.float64) for a in (target, measured, commanded))
    gap = target - commanded
    norm = np.linalg.norm(gap, axis=-1, keepdims=True)
    near = commanded + gap * np.minimum(1.0, max_step / np.maximum(norm, 1e-300))
    lag = measured - commanded
    lag_norm = np.linalg.norm(lag, axis=-1, keepdims=True)
    towards_arm = commanded + lag * np.minimum(1.0, max_step / np.maximum(lag_norm, 1e-300))
    too_far = np.linalg.norm(near - measured, axis=-1, keepdims=True) > max_step * (1 + 1e-9)
    return np.where(too_far, towards_arm, near)


def _down_rotation(yaw: float) -> np.ndarray:
    """Tool z pointing down (world -z), rotated by ``yaw`` about world z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])


def _fmt(values: Any) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _wrap(angle: float) -> float:
    return math.remainder(angle, 2 * math.pi)


class URArm(Arm):
    """``rtde``: the (rtde_control, rtde_receive, rtde_io, dashboard_client) modules; ur_rtde's own when None.
    ``log`` gets the operator's messages; ``clock``/``sleep`` (seconds) time the reset moves, the stream's
    stall check and the joint reading ``limit_command`` leaves for ``apply``. ``stream_thread=False`` leaves
    the stream's periods to the caller (``stream.tick()``; tests)."""

    measure_each_period = True  # the pose moves between calls: the loop reads it at each period's start

    def __init__(self, cfg: URConfig, rtde: tuple[Any, ...] | None = None, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 stream_thread: bool = True) -> None:
        rtde_control, rtde_receive, rtde_io, dashboard_client = rtde if rtde is not None else _import_rtde()
        self.cfg, self.log, self.clock, self.sleep = cfg, log, clock, sleep
        self._wrist3_reading: tuple[float, float] | None = None  # (wrist 3, clock) from limit_command, for apply
        self.world_from_base = np.asarray(cfg.base_to_world, dtype=np.float64)
        self.base_from_world = np.linalg.inv(self.world_from_base)
        self._lock = threading.Lock()  # ur_rtde's control interface is not thread-safe
        self.control = self.receive = self.io = self.dashboard = None
        self.gripper: Gripper | None = None
        self.stream: ServoStream | None = None
        self._closed = False
        try:
            self._connect(rtde_control, rtde_receive, rtde_io, dashboard_client)
            self.rate_hz = cfg.frequency or self._controller_rate()
            self._configure()
            self.gripper = self._make_gripper()
        except Exception as exc:
            self._disconnect()
            if isinstance(exc, ArmError):
                raise
            raise ArmError(f"cannot connect to the UR controller at {cfg.host}: {exc}") from exc
        self.stream = ServoStream(self._send_servo, self._kick, self.rate_hz, cfg.stall_timeout, clock, log,
                                  pace=(self.control.initPeriod, self.control.waitPeriod), rt_priority=cfg.rt_priority)
        self._homed = False
        self._grip_closed = False
        self._seen: tuple[np.ndarray, float, list[float]] | None = None  # world pos, yaw, base pose: last read
        self._limits: tuple[float, float] | None = None  # (max_step, max_dyaw) from the loop's safety filter
        self._wrist3_logged = False
        if stream_thread:
            self.stream.start()
        self.log(f"UR {cfg.host}: streaming at {self.rate_hz:g} Hz ({self.stream.scheduling}), "
                 f"TCP {_fmt(cfg.tcp_offset)} ({cfg.tcp_mode}), payload {cfg.payload_mass:g} kg, "
                 f"watchdog {cfg.watchdog_hz:g} Hz; "
                 "nothing moves until the first reset")

    # ---- connecting ----------------------------------------------------------------------------------------
    def _connect(self, rtde_control: Any, rtde_receive: Any, rtde_io: Any, dashboard_client: Any) -> None:
        host, freq = self.cfg.host, self.cfg.frequency or -1.0  # -1: ur_rtde picks the controller's rate
        self.control = rtde_control.RTDEControlInterface(host, freq)
        self.receive = rtde_receive.RTDEReceiveInterface(host, freq)
        if self.cfg.gripper == "digital" and self.cfg.gripper_output >= 0:
            self.io = rtde_io.RTDEIOInterface(host)
        self.dashboard = dashboard_client.DashboardClient(host)
        self.dashboard.connect()

    def _controller_rate(self) -> float:
        """500 Hz on an e-series (PolyScope 5+), 125 on a CB3: the rate ur_rtde picked for frequency -1."""
        version = str(self._call("polyscopeVersion", self.dashboard.polyscopeVersion))
        match = re.search(r"(\d+)\.\d+", version)
        if match is None:
            self.log(f"UR: cannot read the PolyScope version from {version!r}: streaming at 125 Hz (safe on all)")
            return 125.0
        return 500.0 if int(match.group(1)) >= 5 else 125.0

    def _configure(self) -> None:
        """TCP and payload (or the TCP check), then the watchdog: at connect and after a new control script."""
        cfg = self.cfg
        if cfg.tcp_mode == "set":
            self._ccall_ok("setTcp", self.control.setTcp, list(cfg.tcp_offset))
            self._ccall_ok("setPayload", self.control.setPayload, cfg.payload_mass, list(cfg.payload_cog))
        else:
            active = np.asarray(self._ccall("getTCPOffset", self.control.getTCPOffset), dtype=np.float64)
            if active.shape != (6,) or not np.allclose(active, cfg.tcp_offset, atol=1e-4):
                raise ArmError(f"the controller's active TCP {_fmt(active)} differs from arm.ur.tcp_offset "
                               f"{_fmt(cfg.tcp_offset)}: fix one of them (or tcp_mode: set to set it at connect)")
        self._ccall_ok("setWatchdog", self.control.setWatchdog, cfg.watchdog_hz)

    def _make_gripper(self) -> Gripper:
        if self.cfg.gripper == "robotiq":
            return RobotiqGripper(self.cfg.robotiq, self.cfg.host)

        def set_output(output: int, level: bool) -> Any:
            return self._call("setStandardDigitalOut", self.io.setStandardDigitalOut, output, level)

        return DigitalOutputGripper(set_output, self.cfg.gripper_output, self.cfg.gripper_close_high)

    def bind_safety(self, safety: Any) -> None:
        """The loop's safety limits (a ``SafetyConfig``): steps are also limited against the commanded pose."""
        self._limits = (float(safety.max_step), float(safety.max_dyaw))

    # ---- frames ------------------------------------------------------------------------------------------
    def _read_pose(self) -> tuple[np.ndarray, float, list[float]]:
        tcp = self._read6("getActualTCPPose", self.receive.getActualTCPPose, "TCP pose")
        pos, yaw = self._to_world(tcp)
        return pos, yaw, tcp.tolist()

    def _to_world(self, pose6: np.ndarray) -> tuple[np.ndarray, float]:
        base = np.eye(4)
        base[:3, :3], base[:3, 3] = _rotvec_to_matrix(pose6[3:]), pose6[:3]
        world = self.world_from_base @ base
        return world[:3, 3], math.atan2(world[1, 0], world[0, 0])

    def _base_target(self, pos: np.ndarray, yaw: float) -> list[float]:
        world = np.eye(4)
        world[:3, :3], world[:3, 3] = _down_rotation(yaw), pos
        base = self.base_from_world @ world
        return [*base[:3, 3].tolist(), *_matrix_to_rotvec(base[:3, :3]).tolist()]

    # ---- Arm -----------------------------------------------------------------------------------------------
    def state(self) -> ArmState:
        self._begin()
        return self._report()

    def reset(self) -> ArmState:
        """Gripper open, ``moveL`` home keeping the yaw, ``moveJ`` of wrist 3 alone to ``home_wrist3_deg``.
        A failed move is an ``ArmError`` saying where the arm was left."""
        self._begin()
        self._homed = False
        self.stream.idle()
        self._ensure_script()
        self._wrist3_logged = False
        pos, yaw, _ = self._read_pose()
        home = np.asarray(self.cfg.home, dtype=np.float64)
        self._announce(pos, home)
        self._set_gripper(False)
        self._ccall("servoStop", self.control.servoStop)  # moveL is not a servo command: leave servo mode
        target = self._base_target(home, yaw)
        self._move("moveL to home", self.control.moveL, target, self.cfg.speed, self.cfg.acceleration,
                   float(np.linalg.norm(home - pos)) / self.cfg.speed, lambda: self._at_pose(target),
                   "the arm did not reach home, wrist 3 not unwound")
        self._unwind_wrist3()
        state = self._report()
        self._homed = True
        self.stream.go_to(self._seen[2], self.cfg.period, start=self._seen[2])  # servo from here on, holding
        return state

    def _announce(self, pos: np.ndarray, home: np.ndarray) -> None:
        dist = float(np.linalg.norm(home - pos))
        self.log(f"UR reset: opening the gripper, then moving the TCP in a straight line from {_fmt(pos)} to home "
                 f"{_fmt(home)} (world, m): {dist:.2f} m at {self.cfg.speed:g} m/s, about "
                 f"{dist / self.cfg.speed:.1f} s, turning the tool to point down; then wrist 3 alone to "
                 f"{self.cfg.home_wrist3_deg:g} deg at {self.cfg.joint_speed:g} rad/s")

    def apply(self, command: ArmCommand) -> ArmState:
        reading = self._wrist3_reading
        self._begin()
        dpos = np.asarray(command.dpos, dtype=np.float64)
        if dpos.shape != (3,) or not np.all(np.isfinite(dpos)) or not math.isfinite(command.dyaw):
            raise ArmError(f"refusing a non-finite or malformed command: dpos={command.dpos}, dyaw={command.dyaw}")
        self._require_homed("apply")
        self._check_safety()
        command, _ = self._limit(command, self._wrist3_for_apply(reading))
        pos, yaw = self._step_target(command)
        self.stream.go_to(self._base_target(pos, yaw), self.cfg.period)
        if (command.gripper > 0) != self._grip_closed:
            self._set_gripper(command.gripper > 0)
        return self._report()

    def limit_command(self, command: ArmCommand) -> tuple[ArmCommand, bool]:
        """The yaw step shortened for wrist 3 and the step kept within the safety limits of the commanded pose
        too (module docstring); the joint reading is left for the next call if that is ``apply``."""
        self._begin()
        wrist3 = self._read_wrist3()
        self._wrist3_reading = (wrist3, self.clock())
        limited, clipped = self._limit(command, wrist3)
        if self._seen is None or not np.all(np.isfinite(limited.dpos)) or not math.isfinite(limited.dyaw):
            return limited, clipped
        pos, yaw = self._step_target(limited)
        dpos, dyaw = pos - self._seen[0], _wrap(yaw - self._seen[1])
        if np.allclose(dpos, limited.dpos, atol=1e-12) and abs(dyaw - limited.dyaw) <= 1e-12:
            return limited, clipped
        return replace(limited, dpos=dpos, dyaw=dyaw), True

    def _step_target(self, command: ArmCommand) -> tuple[np.ndarray, float]:
        """Where ``command`` goes from the pose last read, kept within a step of the commanded pose as well."""
        if self._seen is None:
            self._report()
        pos, yaw, _ = self._seen
        target, target_yaw = pos + np.asarray(command.dpos, dtype=np.float64), yaw + command.dyaw
        commanded = self.stream.commanded()
        if self._limits is None or commanded is None:
            return target, target_yaw
        c_pos, c_yaw = self._to_world(commanded)
        max_step, max_dyaw = self._limits
        target = limit_step(target, pos, c_pos, max_step)
        dyaw = limit_step(np.array([command.dyaw]), np.zeros(1), np.array([_wrap(c_yaw - yaw)]), max_dyaw)[0]
        return target, yaw + float(dyaw)

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
        """Re-sends the measured pose as it is (no re-orientation); before the first reset it only reads."""
        self._begin()
        state = self._report()
        if self._homed:
            self.stream.go_to(self._seen[2], self.cfg.period)
        return state

    def stop(self) -> None:
        self._begin()
        self.stream.idle()
        self._homed = False
        for name, fn in (("servoStop", self.control.servoStop), ("speedStop", self.control.speedStop)):
            if self._ccall(name, fn) is False:
                raise ArmError(f"UR {name} refused (protective stop? control script not running?)")

    def recover(self) -> str:
        """Clear a protective or safeguard stop once the operator confirmed the cell is safe; the next reset
        moves home. Returns what it did; an ``ArmError`` when the stop cannot be cleared from here."""
        self._check_open()
        self.stream.idle()
        mode = self._safety_mode()
        if mode not in RUNNING_MODES and mode not in UNLOCKABLE_MODES:
            raise URSafetyStop(f"UR in {SAFETY_MODES.get(mode, mode)}: it cannot be cleared from here; release "
                               "the emergency stop / clear the fault on the pendant and restart the run",
                               "emergency_stop")
        if mode in UNLOCKABLE_MODES:
            self._call("closeSafetyPopup", self.dashboard.closeSafetyPopup)
            self._call("unlockProtectiveStop", self.dashboard.unlockProtectiveStop)
            mode = self._safety_mode()
            if mode not in RUNNING_MODES:
                raise ArmError(f"UR still in {SAFETY_MODES.get(mode, mode)} after the unlock: a UR unlocks a "
                               "protective stop only 5 s after it (a safeguard stop needs its safeguard reset); "
                               "wait and try again")
        self._ensure_script()
        self.stream.restart()
        return "unlocked: the next episode starts with the move home"

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.stream is not None:
                self.stream.stop()
            self.stop()
            self._ccall("stopScript", self.control.stopScript)
        finally:
            self._closed = True
            if self.gripper is not None:
                self.gripper.close()
            self._disconnect()

    # ---- helpers -------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        """Every public call starts here: a sign of life for the stream; drops ``limit_command``'s reading."""
        self._wrist3_reading = None
        self._check_open()
        self.stream.touch()

    def _require_homed(self, what: str) -> None:
        if not self._homed:
            raise ArmError(f"UR {what} before reset: the arm servoes only after a reset moved it home")

    def _report(self) -> ArmState:
        self._check_safety()
        pos, yaw, base = self._read_pose()
        self._seen = (pos, yaw, base)
        return ArmState(ee_pos=pos, ee_yaw=yaw, gripper=self.gripper.closure(), timestamp=time.time())

    def _safety_mode(self) -> int:
        if not self._call("isConnected", self.receive.isConnected):
            raise ArmError(f"lost the RTDE connection to the UR controller at {self.cfg.host}")
        return int(self._call("getSafetyMode", self.receive.getSafetyMode))

    def _check_safety(self) -> None:
        """Safety mode, then what the stream saw; a stop makes the arm idle until the next reset."""
        mode = self._safety_mode()
        if mode not in RUNNING_MODES:
            self.stream.idle()
            self._homed = False
            name = SAFETY_MODES.get(mode, f"safety mode {mode}")
            if mode in UNLOCKABLE_MODES:
                raise URSafetyStop(f"UR {name}: the arm stopped; make sure the cell is clear, then press u to "
                                   "unlock (docs/deploy.md)", "protective_stop")
            raise URSafetyStop(f"UR {name}: everything stops; release the emergency stop or clear the fault on "
                               "the pendant and restart the run", "emergency_stop")
        if self.stream.stalled or self.stream.error:
            why = self.stream.error or f"the loop made no call for {self.cfg.stall_timeout:g} s"
            self.stream.restart()
            self._homed = False
            raise ArmError(f"UR servo stream stopped ({why}); the controller stops the control script. The next "
                           "reset uploads it again")

    def _ensure_script(self) -> None:
        if self._ccall("isProgramRunning", self.control.isProgramRunning):
            return
        self._ccall_ok("reuploadScript", self.control.reuploadScript)
        self._configure()
        self.stream.restart()
        self.log("UR: the control script had stopped (watchdog, safety stop or pendant): uploaded it again and "
                 "set the TCP, payload and watchdog again")

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
        turn = abs(math.radians(wound) - q[5])
        self._move(f"moveJ unwinding wrist 3 to {self.cfg.home_wrist3_deg:g} deg", self.control.moveJ, q.tolist(),
                   self.cfg.joint_speed, self.cfg.joint_acceleration, turn / self.cfg.joint_speed,
                   lambda: abs(self._read_wrist3() - q[5]) < 1e-3,
                   f"the arm is at home, wrist 3 not unwound (it was at {wound:.1f} deg)")

    def _move(self, what: str, fn: Callable[..., Any], target: list[float], speed: float, acceleration: float,
              expected_s: float, arrived: Callable[[], bool], left: str) -> None:
        """One move of ``reset``, asynchronous and polled: the watchdog is kicked and the safety mode read
        while it runs. ``left`` says where a failure leaves the arm."""
        try:
            if not self._ccall(what, fn, target, speed, acceleration, True):
                raise ArmError(f"UR {what} failed (protective stop? program not running?); {left}")
            deadline = self.clock() + expected_s + self.cfg.move_timeout
            while True:
                self._ccall("kickWatchdog", self.control.kickWatchdog)
                self._check_safety()
                if self._ccall("getAsyncOperationProgress", self.control.getAsyncOperationProgress) < 0 \
                        and arrived():
                    return
                if self.clock() > deadline:
                    raise ArmError(f"UR {what} did not finish within {expected_s + self.cfg.move_timeout:.1f} s; "
                                   f"{left}")
                self.sleep(MOVE_POLL)
        except URSafetyStop as exc:
            raise URSafetyStop(f"{exc}; {left}", exc.safety_stop) from exc
        except ArmError as exc:
            if left in str(exc):
                raise
            raise ArmError(f"{exc}; {left}") from exc.__cause__

    def _at_pose(self, target: list[float]) -> bool:
        tcp = self._read6("getActualTCPPose", self.receive.getActualTCPPose, "TCP pose")
        return float(np.linalg.norm(tcp[:3] - np.asarray(target[:3]))) < 2e-3

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

    def _send_servo(self, pose: list[float]) -> bool:
        """The stream's servoL: one controller period, so a new target takes effect at the next one."""
        cfg = self.cfg
        return bool(self._ccall("servoL", self.control.servoL, pose, 0.0, 0.0, 1.0 / self.rate_hz, cfg.lookahead,
                                cfg.gain))

    def _kick(self) -> Any:
        return self._ccall("kickWatchdog", self.control.kickWatchdog)

    def _set_gripper(self, close: bool) -> None:
        self.gripper.command(close)
        self._grip_closed = close

    def _ccall(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """A call on the control interface, one at a time (the stream's thread uses it too)."""
        with self._lock:
            return self._call(what, fn, *args)

    def _ccall_ok(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        if self._ccall(what, fn, *args) is False:
            raise ArmError(f"UR {what} refused (controller {self.cfg.host})")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ArmError:
            raise
        except Exception as exc:  # RuntimeError (connection, state), ValueError (ur_rtde's range checks), ...
            raise ArmError(f"UR {what} failed (controller {self.cfg.host}): {type(exc).__name__}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ArmError("the UR arm is closed")

    def _disconnect(self) -> None:
        for iface in (self.control, self.receive, self.io, self.dashboard):
            disconnect = getattr(iface, "disconnect", None)  # older ur_rtde has no RTDEIOInterface.disconnect
            if disconnect is None:
                continue
            try:
                disconnect()
            except Exception:  # closing anyway: the other interfaces must still be released
                pass
