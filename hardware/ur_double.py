"""A test double for a UR controller behind ur_rtde: timing-faithful enough to show what a real arm would do.

``URControllerDouble`` models one controller; ``modules()`` gives stand-ins for ur_rtde's Python modules
(``rtde_control``, ``rtde_receive``, ``rtde_io``, ``dashboard_client``) with the same positional signatures,
to pass as ``URArm(cfg, rtde=...)`` or to place in ``sys.modules``. Every call is recorded in ``calls``;
``raises`` / ``returns`` override any call by name.

What it models, on its own clock (``FakeClock`` for deterministic tests, ``RealClock`` for threads):

- ``servoL(pose, ..., time, ...)``: the commanded TCP pose moves from where it is to ``pose`` linearly over
  ``time``. Like ur_rtde's script, a servo command runs for its whole ``time``: one that arrives earlier
  waits for it (only the latest waiting command is kept, as in the input registers). The measured pose
  follows the commanded one with a first-order lag (``lag`` seconds).
- ``moveL``/``moveJ`` take ``distance / speed``; blocking ones block the caller that long, asynchronous ones
  report progress through ``getAsyncOperationProgress`` (>= 0 running, -1 done). ``moveJ`` may turn wrist 3
  only (the tool's yaw turns by minus wrist 3's turn, the tool pointing down).
- Orientation is a yaw about the base z axis (unwrapped, so wrist 3 can turn more than half a turn) times a
  fixed "rest" rotation that a command can change (a parked arm need not point its tool down).
- Safety: ``protective_stop()`` / ``emergency_stop()`` stop the motion and the control script; motion
  commands then return False; the dashboard unlocks a protective stop only ``UNLOCK_DELAY`` s after it,
  never an emergency stop. ``disconnect_client()`` drops the connection (ur_rtde's receive interface keeps
  returning the last values). ``kill_client()`` makes the client vanish without a word: nothing it sends
  arrives any more.
- Watchdog: after ``setWatchdog(f)`` any command on the control interface (``kickWatchdog`` included)
  feeds it; no command for ``1/f`` s stops the control script (ur_rtde's script sets the watchdog with the
  ``"stop"`` action). ``stopped_at`` / ``stop_reason`` say when and why.
- The active TCP (``setTcp`` / ``getTCPOffset``) changes the reported pose as a real TCP change does;
  ``setPayload`` is recorded.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

NORMAL, PROTECTIVE_STOP, ROBOT_EMERGENCY_STOP = 1, 3, 7
UNLOCK_DELAY = 5.0  # s: a UR controller refuses to unlock a protective stop earlier
LOOKAHEAD_RANGE = (0.03, 0.2)
GAIN_RANGE = (100.0, 2000.0)


class FakeClock:
    """Time that moves only when told: ``sleep`` advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def yaw_of(rot: Rotation) -> float:
    m = rot.as_matrix()
    return math.atan2(m[1, 0], m[0, 0])


def _rz(yaw: float) -> Rotation:
    return Rotation.from_euler("z", yaw)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def lag_step(measured: np.ndarray, c0: np.ndarray, c1: np.ndarray, h: float, tau: float) -> np.ndarray:
    """The measured value after ``h`` s of first-order lag (time constant ``tau``) behind a command moving
    linearly from ``c0`` to ``c1``: the exact solution, so any step size gives the same path (arrays too)."""
    if tau <= 0:
        return np.array(c1, dtype=np.float64)
    v = (c1 - c0) / h
    return c1 - v * tau + (measured - c0 + v * tau) * math.exp(-h / tau)


@dataclass
class _Pose:
    """Position, unwrapped yaw about base z and the rest rotation: rotation = Rz(yaw) * rest."""

    pos: np.ndarray
    yaw: float
    rest: Rotation

    def rotation(self) -> Rotation:
        return _rz(self.yaw) * self.rest

    def as6(self) -> list[float]:
        return [*self.pos.tolist(), *self.rotation().as_rotvec().tolist()]

    def toward(self, pose6: Any) -> _Pose:
        """``pose6`` as a target reached from here: the yaw the nearest way round."""
        rot = Rotation.from_rotvec(np.asarray(pose6[3:], dtype=np.float64))
        target_yaw = yaw_of(rot)
        return _Pose(np.asarray(pose6[:3], dtype=np.float64), self.yaw + _wrap(target_yaw - self.yaw),
                     _rz(-target_yaw) * rot)

    def blend(self, other: _Pose, s: float) -> _Pose:
        """Linear in position and yaw, along the shortest arc in the rest rotation (scipy's Slerp, without
        building one each time: the double runs it several times a period, in the streaming thread's time)."""
        turn = (self.rest.inv() * other.rest).as_rotvec()
        rest = self.rest * Rotation.from_rotvec(min(max(s, 0.0), 1.0) * turn) if turn.any() else self.rest
        return _Pose(self.pos + s * (other.pos - self.pos), self.yaw + s * (other.yaw - self.yaw), rest)


@dataclass
class _Segment:
    start: _Pose
    end: _Pose
    t0: float
    duration: float

    @property
    def t_end(self) -> float:
        return self.t0 + self.duration

    def at(self, t: float) -> _Pose:
        s = 1.0 if self.duration <= 0 else min(max((t - self.t0) / self.duration, 0.0), 1.0)
        return self.start.blend(self.end, s)


class URControllerDouble:
    """One UR controller (module docstring). Poses are in the robot base frame, for the active TCP."""

    def __init__(self, tcp: list[float], clock: FakeClock | RealClock | None = None, lag: float = 0.02,
                 wrist3: float = 0.0, tcp_offset: list[float] | None = None, polyscope: str = "5.11.1",
                 move_settle: float = 0.1) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.lag = lag
        self.move_settle = move_settle
        self.polyscope = polyscope
        self.t = self.clock.now()
        self.meas = _Pose(np.zeros(3), 0.0, Rotation.identity()).toward(tcp)
        self.cmd = _Pose(self.meas.pos.copy(), self.meas.yaw, self.meas.rest)
        self.q = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, wrist3])
        self._wrist3_yaw = self.meas.yaw  # wrist 3 turns by minus the yaw change from here
        self.segment: _Segment | None = None
        self.pending: tuple[_Pose, float] | None = None
        self.async_until: float | None = None
        self.tcp_offset = list(tcp_offset) if tcp_offset is not None else [0.0] * 6
        self.installation_tcp = list(self.tcp_offset)
        self.payload: tuple[float, list[float]] | None = None
        self.safety_mode = NORMAL
        self.program_running = True
        self.connected = True
        self.killed = False
        self.watchdog_hz = 0.0
        self.last_kick = self.t
        self.stopped_at: float | None = None
        self.stop_reason = ""
        self.outputs: dict[int, bool] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.raises: dict[str, Exception] = {}
        self.returns: dict[str, Any] = {}
        self.servo_times: list[float] = []   # clock time of each servoL that arrived
        self.servo_targets: list[list[float]] = []
        self.lock = threading.RLock()

    # ---- calls ---------------------------------------------------------------------------------------------
    def call(self, name: str, *args: Any, default: Any = True, control: bool = False) -> Any:
        with self.lock:
            if self.killed:
                raise RuntimeError("the client process is gone")
            self.advance()
            self.calls.append((name, args))
            if control and self.connected:
                self.last_kick = self.t  # every command writes the watchdog's input register
            if name in self.raises:
                raise self.raises[name]
            return self.returns.get(name, default)

    def named(self, *names: str) -> list[tuple[str, tuple]]:
        with self.lock:
            return [c for c in self.calls if c[0] in names]

    # ---- time ----------------------------------------------------------------------------------------------
    def advance(self) -> None:
        """Bring the model to the clock's now: the watchdog first, then the motion."""
        with self.lock:
            now = self.clock.now()
            expiry = self._watchdog_expiry()
            if expiry is not None and expiry <= now:
                self._move_to_time(expiry)
                self._stop(f"watchdog: no command for more than 1/{self.watchdog_hz:g} s", running=False)
            self._move_to_time(now)

    def _watchdog_expiry(self) -> float | None:
        if self.watchdog_hz <= 0 or not self.program_running:
            return None
        return self.last_kick + 1.0 / self.watchdog_hz

    def _move_to_time(self, t1: float) -> None:
        while self.t < t1:
            t_next = t1
            if self.segment is not None and self.t < self.segment.t_end:
                t_next = min(t1, self.segment.t_end)
            self._step(t_next)
            if self.segment is not None and self.t >= self.segment.t_end and self.pending is not None:
                end, duration = self.pending
                self.pending = None
                self.segment = _Segment(self.cmd, end, self.t, duration)

    def _step(self, t1: float) -> None:
        """Commanded pose linear over [t, t1]; measured follows it with the first-order lag, exactly."""
        h = t1 - self.t
        c0 = self.cmd
        c1 = self.segment.at(t1) if self.segment is not None else c0
        decay = math.exp(-h / self.lag) if self.lag > 0 else 0.0
        self.meas = _Pose(lag_step(self.meas.pos, c0.pos, c1.pos, h, self.lag),
                          float(lag_step(np.array(self.meas.yaw), np.array(c0.yaw), np.array(c1.yaw), h, self.lag)),
                          self.meas.blend(_Pose(c1.pos, c1.yaw, c1.rest), 1.0 - decay).rest)
        self.cmd = c1
        self.q[5] -= self.meas.yaw - self._wrist3_yaw
        self._wrist3_yaw = self.meas.yaw
        self.t = t1

    def _stop(self, reason: str, running: bool = False, mode: int | None = None) -> None:
        self.segment, self.pending, self.async_until = None, None, None
        self.cmd = _Pose(self.meas.pos.copy(), self.meas.yaw, self.meas.rest)
        self.program_running = running
        if mode is not None:
            self.safety_mode = mode
        if self.stopped_at is None or not running:
            self.stopped_at, self.stop_reason = self.t, reason

    # ---- injected events ---------------------------------------------------------------------------------
    def protective_stop(self, reason: str = "protective stop (collision)") -> None:
        with self.lock:
            self.advance()
            self._stop(reason, mode=PROTECTIVE_STOP)

    def emergency_stop(self, reason: str = "emergency stop button pressed") -> None:
        with self.lock:
            self.advance()
            self._stop(reason, mode=ROBOT_EMERGENCY_STOP)

    def disconnect_client(self) -> None:
        with self.lock:
            self.advance()
            self.connected = False

    def kill_client(self) -> None:
        """The client process vanished: nothing it sends arrives any more; the watchdog is its only net."""
        with self.lock:
            self.advance()
            self.killed = True

    def reported_stop(self) -> bool:
        """The controller says it stopped (watchdog, protective or emergency stop), as of now."""
        with self.lock:
            self.advance()
            return not self.program_running or self.safety_mode != NORMAL

    # ---- the control script ------------------------------------------------------------------------------
    def can_move(self) -> bool:
        return self.connected and self.program_running and self.safety_mode == NORMAL

    def servo(self, pose: Any, duration: float, lookahead: float, gain: float) -> bool:
        if not LOOKAHEAD_RANGE[0] <= lookahead <= LOOKAHEAD_RANGE[1]:
            raise ValueError(f"lookahead_time {lookahead} is not within [0.03;0.2]")
        if not GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]:
            raise ValueError(f"gain {gain} is not within [100;2000]")
        if not self.can_move():
            return False
        self.servo_times.append(self.t)
        self.servo_targets.append(list(pose))
        self.async_until = None
        end = (self.pending[0] if self.pending else self.segment.end if self.segment else self.cmd).toward(pose)
        if self.segment is not None and self.t < self.segment.t_end:
            self.pending = (end, duration)  # the running servoj finishes its time first
        else:
            self.segment = _Segment(self.cmd, end, self.t, duration)
        return True

    def move(self, end: _Pose, speed: float, asynchronous: bool, angular_speed: float) -> bool:
        if not self.can_move():
            return False
        dist = float(np.linalg.norm(end.pos - self.cmd.pos))
        turn = abs(end.yaw - self.cmd.yaw) + (self.cmd.rest.inv() * end.rest).magnitude()
        duration = max(dist / speed, turn / angular_speed, 0.02)
        self.segment, self.pending = _Segment(self.cmd, end, self.t, duration), None
        done = self.t + duration + self.move_settle
        if asynchronous:
            self.async_until = done
            return True
        self.lock.release()
        try:
            self.clock.sleep(done - self.clock.now())  # a blocking move: the caller waits, nothing kicks
        finally:
            self.lock.acquire()
        self.advance()
        return self.can_move()

    def set_tcp(self, offset: list[float]) -> None:
        """The same flange, another TCP: re-express the modelled poses."""
        old = _pose_matrix(self.tcp_offset)
        new = _pose_matrix(offset)
        change = np.linalg.inv(old) @ new
        for name in ("meas", "cmd"):
            pose = getattr(self, name)
            m = _pose_matrix(pose.as6()) @ change
            moved = pose.toward([*m[:3, 3], *Rotation.from_matrix(m[:3, :3]).as_rotvec()])
            setattr(self, name, moved)
        self._wrist3_yaw = self.meas.yaw
        self.segment, self.pending = None, None
        self.tcp_offset = list(offset)

    def unlock(self) -> None:
        if self.safety_mode == PROTECTIVE_STOP and self.stopped_at is not None \
                and self.t - self.stopped_at >= UNLOCK_DELAY:
            self.safety_mode = NORMAL

    # ---- the stand-in modules -------------------------------------------------------------------------------
    def modules(self) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType, types.ModuleType]:
        control, receive, io, dashboard = (types.ModuleType(n) for n in
                                           ("rtde_control", "rtde_receive", "rtde_io", "dashboard_client"))
        control.RTDEControlInterface = lambda *a: _Control(self, *a)
        receive.RTDEReceiveInterface = lambda *a: _Receive(self, *a)
        io.RTDEIOInterface = lambda *a: _IO(self, *a)
        dashboard.DashboardClient = lambda *a: _Dashboard(self, *a)
        return control, receive, io, dashboard


def _pose_matrix(pose6: Any) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(np.asarray(pose6[3:], dtype=np.float64)).as_matrix()
    m[:3, 3] = pose6[:3]
    return m


class _Control:
    """``rtde_control.RTDEControlInterface``."""

    def __init__(self, ctl: URControllerDouble, hostname: str, frequency: float = -1.0, *rest: Any) -> None:
        self.ctl = ctl
        ctl.call("RTDEControlInterface", hostname, frequency)
        major = int(ctl.polyscope.split(".")[0])
        self.frequency = frequency if frequency > 0 else (500.0 if major >= 5 else 125.0)

    def _c(self, name: str, *args: Any, default: Any = True) -> Any:
        return self.ctl.call(name, *args, default=default, control=True)

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain) -> bool:
        ok = self._c("servoL", list(pose), speed, acceleration, time, lookahead_time, gain)
        with self.ctl.lock:
            return bool(ok) and self.ctl.servo(pose, time, lookahead_time, gain)

    def moveL(self, pose, speed=0.25, acceleration=1.2, asynchronous=False) -> bool:
        ok = self._c("moveL", list(pose), speed, acceleration, asynchronous)
        with self.ctl.lock:
            return bool(ok) and self.ctl.move(self.ctl.cmd.toward(pose), speed, asynchronous, 1.0)

    def moveJ(self, q, speed=1.05, acceleration=1.4, asynchronous=False) -> bool:
        ok = self._c("moveJ", list(q), speed, acceleration, asynchronous)
        with self.ctl.lock:
            ctl = self.ctl
            if not np.allclose(q[:5], ctl.q[:5], atol=1e-12):
                raise AssertionError(f"the double models wrist 3 turning alone, got {list(q)} from {ctl.q}")
            cmd = ctl.cmd
            end = _Pose(cmd.pos.copy(), cmd.yaw - (q[5] - ctl.q[5]), cmd.rest)
            return bool(ok) and ctl.move(end, 1.0, asynchronous, speed)

    def getAsyncOperationProgress(self) -> int:
        self._c("getAsyncOperationProgress", default=None)
        with self.ctl.lock:
            running = self.ctl.async_until is not None and self.ctl.t < self.ctl.async_until
            return 0 if running else -1

    def servoStop(self, a=10.0) -> bool:
        ok = self._c("servoStop")
        with self.ctl.lock:
            if self.ctl.can_move():
                self.ctl.segment, self.ctl.pending = None, None
                self.ctl.cmd = self.ctl.meas
        return ok

    def speedStop(self, a=10.0) -> bool:
        return self._c("speedStop")

    def stopScript(self) -> None:
        self._c("stopScript")
        with self.ctl.lock:
            self.ctl._stop("stopScript", running=False)

    def reuploadScript(self) -> bool:
        ok = self._c("reuploadScript")
        with self.ctl.lock:
            if ok and self.ctl.connected and self.ctl.safety_mode == NORMAL:
                self.ctl.program_running = True
                self.ctl.watchdog_hz = 0.0  # a new script: no watchdog, the installation's TCP
                self.ctl.set_tcp(self.ctl.installation_tcp)
                self.ctl.stopped_at = None
                return True
        return False

    def isProgramRunning(self) -> bool:
        self._c("isProgramRunning", default=None)
        return self.ctl.program_running

    def setWatchdog(self, min_frequency=10.0) -> bool:
        ok = self._c("setWatchdog", min_frequency)
        with self.ctl.lock:
            if ok:
                self.ctl.watchdog_hz = float(min_frequency)
        return ok

    def kickWatchdog(self) -> bool:
        return self._c("kickWatchdog")

    def setTcp(self, tcp_offset) -> bool:
        ok = self._c("setTcp", list(tcp_offset))
        with self.ctl.lock:
            if ok:
                self.ctl.set_tcp(list(tcp_offset))
        return ok

    def getTCPOffset(self) -> list[float]:
        answer = self._c("getTCPOffset", default=None)
        return list(self.ctl.tcp_offset) if answer is None else answer

    def setPayload(self, mass, cog=None) -> bool:
        ok = self._c("setPayload", mass, list(cog) if cog is not None else None)
        if ok:
            self.ctl.payload = (float(mass), list(cog) if cog is not None else [])
        return ok

    def initPeriod(self) -> float:
        return self.ctl.clock.now()

    def waitPeriod(self, t_cycle_start: float) -> None:
        """ur_rtde sleeps most of the rest of the period and spins the last bit."""
        deadline = t_cycle_start + 1.0 / self.frequency
        clock = self.ctl.clock
        if isinstance(clock, FakeClock):
            clock.sleep(deadline - clock.now())
            return
        rest = deadline - time.monotonic()
        if rest > 3e-4:
            time.sleep(rest - 2e-4)
        while time.monotonic() < deadline:
            pass

    def isConnected(self) -> bool:
        self.ctl.call("control.isConnected", default=None)
        return self.ctl.connected

    def disconnect(self) -> None:
        self.ctl.call("control.disconnect")


class _Receive:
    """``rtde_receive.RTDEReceiveInterface``: after a lost connection, the last values."""

    def __init__(self, ctl: URControllerDouble, hostname: str, frequency: float = -1.0, *rest: Any) -> None:
        self.ctl = ctl
        self._last_pose: list[float] | None = None
        self._last_q: list[float] | None = None
        ctl.call("RTDEReceiveInterface", hostname, frequency)

    def getActualTCPPose(self) -> list[float]:
        answer = self.ctl.call("getActualTCPPose", default=None)
        if answer is not None:
            return answer
        if self.ctl.connected or self._last_pose is None:
            self._last_pose = self.ctl.meas.as6()
        return list(self._last_pose)

    def getTargetTCPPose(self) -> list[float]:
        self.ctl.call("getTargetTCPPose")
        return self.ctl.cmd.as6()

    def getActualQ(self) -> list[float]:
        answer = self.ctl.call("getActualQ", default=None)
        if answer is not None:
            return answer
        if self.ctl.connected or self._last_q is None:
            self._last_q = self.ctl.q.tolist()
        return list(self._last_q)

    def getSafetyMode(self) -> int:
        answer = self.ctl.call("getSafetyMode", default=None)
        return self.ctl.safety_mode if answer is None else answer

    def isProtectiveStopped(self) -> bool:
        self.ctl.call("isProtectiveStopped")
        return self.ctl.safety_mode == PROTECTIVE_STOP

    def isEmergencyStopped(self) -> bool:
        self.ctl.call("isEmergencyStopped")
        return self.ctl.safety_mode == ROBOT_EMERGENCY_STOP

    def isConnected(self) -> bool:
        self.ctl.call("receive.isConnected", default=None)
        return self.ctl.connected

    def disconnect(self) -> None:
        self.ctl.call("receive.disconnect")


class _IO:
    def __init__(self, ctl: URControllerDouble, hostname: str, *rest: Any) -> None:
        self.ctl = ctl
        ctl.call("RTDEIOInterface", hostname)

    def setStandardDigitalOut(self, output_id: int, signal_level: bool) -> bool:
        ok = self.ctl.call("setStandardDigitalOut", output_id, signal_level)
        if ok:
            self.ctl.outputs[output_id] = bool(signal_level)
        return ok

    def disconnect(self) -> None:
        self.ctl.call("io.disconnect")


class _Dashboard:
    """``dashboard_client.DashboardClient``."""

    def __init__(self, ctl: URControllerDouble, hostname: str, *rest: Any) -> None:
        self.ctl = ctl
        ctl.call("DashboardClient", hostname)

    def connect(self, *args: Any) -> None:
        self.ctl.call("dashboard.connect")

    def isConnected(self) -> bool:
        self.ctl.call("dashboard.isConnected")
        return self.ctl.connected

    def polyscopeVersion(self) -> str:
        answer = self.ctl.call("polyscopeVersion", default=None)
        return f"URSoftware {self.ctl.polyscope}.0 (Jan 01 2024)" if answer is None else answer

    def closeSafetyPopup(self) -> None:
        self.ctl.call("closeSafetyPopup")

    def unlockProtectiveStop(self) -> None:
        self.ctl.call("unlockProtectiveStop")
        with self.ctl.lock:
            self.ctl.unlock()

    def disconnect(self) -> None:
        self.ctl.call("dashboard.disconnect")


# ---- a Robotiq gripper behind its URCap socket -------------------------------------------------------------
class RobotiqDouble:
    """A Robotiq gripper's URCap socket server (``SET``/``GET`` text commands, ``ack`` replies) on localhost.

    The position (0 open .. 255 closed) moves towards ``POS`` at ``counts_per_s`` once ``GTO`` is 1; an
    object at ``object_at`` stops the fingers there (``OBJ 2``)."""

    def __init__(self, counts_per_s: float = 2550.0, object_at: int | None = None) -> None:
        self.counts_per_s = counts_per_s
        self.object_at = object_at
        self.vars = {"ACT": 0, "GTO": 0, "POS": 0, "SPE": 255, "FOR": 255}
        self.pos = 0.0
        self.t = time.monotonic()
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _advance(self) -> None:
        now = time.monotonic()
        if self.vars["ACT"] and self.vars["GTO"]:
            target = float(self.vars["POS"])
            if self.object_at is not None and target > self.object_at:
                target = float(self.object_at)
            step = self.counts_per_s * (now - self.t)
            self.pos += max(min(target - self.pos, step), -step)
        self.t = now

    def answer(self, line: str) -> str:
        with self.lock:
            self.lines.append(line)
            self._advance()
            words = line.split()
            if len(words) == 3 and words[0] == "SET" and words[1] in self.vars and words[2].isdigit():
                self.vars[words[1]] = int(words[2])
                return "ack"
            if len(words) == 2 and words[0] == "GET":
                return f"{words[1]} {self._get(words[1])}"
            return "?"

    def _get(self, name: str) -> int:
        if name == "POS":
            return int(round(self.pos))
        if name == "STA":
            return 3 if self.vars["ACT"] else 0
        if name == "OBJ":
            moving = abs(self.pos - min(self.vars["POS"], self.object_at or 255)) > 0.5
            held = self.object_at is not None and self.vars["POS"] > self.object_at
            return 0 if moving else 2 if held else 3
        return self.vars.get(name, 0)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw", newline="\n") as stream:
            for line in stream:
                stream.write(self.answer(line.strip()) + "\n")
                stream.flush()

    def close(self) -> None:
        self.server.close()

