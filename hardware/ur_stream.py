"""The UR driver's streaming thread: interpolated ``servoL`` targets at the controller's rate, and the watchdog.

The control loop hands over one segment a control period (``go_to``): from the last pose this stream sent
to the new target, over ``duration`` (the loop's period). Each controller period (``tick``) the thread sends
the pose due now with ``time = 1/rate``, so a new target takes effect within one controller period instead of
after a whole servo ``time``, and the arm moves along a line instead of a staircase. Each tick also kicks the
controller's watchdog. While servoing, the stream needs a sign of life from the loop (any call on the arm,
``touch``) every ``stall_timeout`` s: without one it stops sending and kicking, so the controller's watchdog
stops the arm ``1/watchdog_hz`` s later (a hung loop); a killed process stops kicking at once. Idle (before
the first reset, after a stop, during a reset's moves) it sends nothing and only kicks.

``tick`` is one period's work; ``start`` runs it in a thread paced by ur_rtde's ``initPeriod``/``waitPeriod``.

**Timing.** A 500 Hz thread in a Python process that also runs the policy wakes late whenever the loop holds
the CPU or the interpreter lock: on a 2-core box it missed its period by more than 20% in about 2% of periods
(docs/deploy.md). So the thread asks the OS for real-time scheduling (``SCHED_FIFO`` at ``rt_priority``, as
ur_rtde's own threads do, through ``robot_stack.runtime.realtime``; it is logged when refused), and while it
runs the interpreter hands its lock to a waiting thread after ``GIL_SWITCH_S`` instead of 5 ms.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from robot_stack.runtime.realtime import fifo_priority

GIL_SWITCH_S = 1e-4  # the interpreter's switch interval while a stream runs (CPython's default is 5 ms)


class _Segment:
    def __init__(self, start: np.ndarray, end: np.ndarray, t0: float, duration: float) -> None:
        self.pos0, self.pos1 = start[:3], end[:3]
        self.rot0 = Rotation.from_rotvec(start[3:])
        self.turn = (self.rot0.inv() * Rotation.from_rotvec(end[3:])).as_rotvec()
        self.end, self.t0, self.duration = end, t0, duration

    def at(self, t: float) -> np.ndarray:
        s = min(max((t - self.t0) / self.duration, 0.0), 1.0) if self.duration > 0 else 1.0
        if s >= 1.0:
            return self.end.copy()
        rot = self.rot0 * Rotation.from_rotvec(s * self.turn)
        return np.concatenate([self.pos0 + s * (self.pos1 - self.pos0), rot.as_rotvec()])


class ServoStream:
    """``send(pose) -> bool`` is the locked ``servoL`` with the stream's time; ``kick() -> bool`` the watchdog's.
    ``pace`` is (``initPeriod``, ``waitPeriod``) for the thread; ``rt_priority`` its ``SCHED_FIFO`` priority
    (1-99; 0 keeps the OS's normal scheduling)."""

    def __init__(self, send: Callable[[list[float]], bool], kick: Callable[[], Any], rate_hz: float,
                 stall_timeout: float, clock: Callable[[], float], log: Callable[[str], None],
                 pace: tuple[Callable[[], Any], Callable[[Any], None]] | None = None, rt_priority: int = 0) -> None:
        self.send, self.kick, self.rate_hz, self.rt_priority = send, kick, rate_hz, rt_priority
        self.stall_timeout, self.clock, self.log, self.pace = stall_timeout, clock, log, pace
        self.lock = threading.Lock()
        self.servoing = False
        self.segment: _Segment | None = None
        self.last_sent: np.ndarray | None = None
        self.client_seen = clock()
        self.stalled = False
        self.error = ""
        self.tick_times: collections.deque[float] = collections.deque(maxlen=200_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._switch_interval: float | None = None  # the interpreter's own, restored by stop
        self.scheduling = "thread not started"  # what the thread got from the OS, for the operator and the bench

    # ---- the arm's side ------------------------------------------------------------------------------------
    def touch(self) -> None:
        self.client_seen = self.clock()

    def go_to(self, end: list[float], duration: float, start: list[float] | None = None) -> None:
        """A new segment to ``end`` over ``duration`` s, from the last pose sent (``start`` when idle)."""
        with self.lock:
            now = self.clock()
            origin = self.last_sent if self.servoing and self.last_sent is not None else start
            origin = np.asarray(end if origin is None else origin, dtype=np.float64)
            self.segment = _Segment(origin, np.asarray(end, dtype=np.float64), now, duration)
            self.servoing, self.client_seen = True, now

    def idle(self) -> None:
        with self.lock:
            self.servoing, self.segment, self.last_sent = False, None, None

    def commanded(self) -> np.ndarray | None:
        """The last pose sent while servoing (base frame), None when idle."""
        with self.lock:
            return None if not self.servoing or self.last_sent is None else self.last_sent.copy()

    def restart(self) -> None:
        """After the controller stopped (a stall, a refused target): idle, ready to feed the watchdog again."""
        self.idle()
        self.stalled, self.error = False, ""
        self.touch()

    # ---- one controller period -------------------------------------------------------------------------------
    def tick(self) -> None:
        self.tick_times.append(time.perf_counter())
        if self.stalled or self.error:
            return  # the controller is (being) stopped: send nothing, let its watchdog act
        with self.lock:
            now = self.clock()
            pose = self.segment.at(now) if self.servoing and self.segment is not None else None
            if pose is not None and now - self.client_seen > self.stall_timeout:
                self.stalled = True
        if self.stalled:
            self.log(f"UR stream: no call from the control loop for {self.stall_timeout:g} s: stopped sending "
                     "and feeding the watchdog, the controller stops the arm")
            return
        try:
            if pose is not None:
                if not self.send(pose.tolist()):
                    self.error = "the controller refused a servo target"
                    return
                with self.lock:
                    if self.servoing:
                        self.last_sent = pose
            self.kick()
        except Exception as exc:  # the thread must not die silently: the arm reports it on its next call
            self.error = f"{type(exc).__name__}: {exc}"

    # ---- the thread ----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(GIL_SWITCH_S, self._switch_interval))
            started = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(started,), name="ur-servo-stream", daemon=True)
            self._thread.start()
            started.wait(timeout=2.0)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    def _run(self, started: threading.Event) -> None:
        with fifo_priority(self.rt_priority, log=self._log_refusal) as raised:
            self.scheduling = f"SCHED_FIFO priority {self.rt_priority}" if raised else "normal scheduling"
            started.set()
            self._loop()

    def _log_refusal(self, message: str) -> None:
        self.log(f"UR stream: {message}; expect late periods while the loop computes (docs/deploy.md)")

    def _loop(self) -> None:
        init, wait = self.pace if self.pace is not None else (time.monotonic, self._sleep_rest)
        while not self._stop.is_set():
            t_start = init()
            self.tick()
            wait(t_start)

    def _sleep_rest(self, t_start: float) -> None:
        rest = t_start + 1.0 / self.rate_hz - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def periods(self) -> np.ndarray:
        """Seconds between consecutive ticks, as recorded (for the jitter figures)."""
        return np.diff(np.asarray(self.tick_times, dtype=np.float64))
