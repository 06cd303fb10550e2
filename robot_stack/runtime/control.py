"""The fixed-rate control loop: camera -> heightmap -> policy -> safety filter -> arm, recorded.

Each period has a deadline. The policy gets what is left of the period (minus a reserve for the filter and
the arm); no answer in time, an error reply or a late answer hold the pose for that period, and ``K``
silent periods in a row stop the arm and end the episode. A lost camera stops the arm cleanly. Every step
that reached the arm (applied or held) is handed to the recorder before anything else can fail, and the
episode is closed (saved) on every way out, exceptions included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from robot_stack.devices import Arm, ArmError, ArmState, Camera, CameraError
from robot_stack.observation import ObservationBuilder, arm_vector
from robot_stack.runtime.metrics import LatencyHistogram
from robot_stack.runtime.realtime import fifo_priority, freeze_gc_in_main_thread
from robot_stack.runtime.safety import SafetyFilter
from robot_stack.specs import PolicySpec, SpecError


class Policy(Protocol):
    spec: PolicySpec | None

    def act(self, obs: dict[str, np.ndarray], timeout: float | None = None) -> np.ndarray: ...


class Recorder(Protocol):
    def start_episode(self, meta: dict[str, Any] | None = None) -> Any: ...

    def add_step(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, info: dict) -> Any: ...

    def end_episode(self, success: bool | None = None, **meta: Any) -> Any: ...


@dataclass
class LoopConfig:
    """Loop timing. ``reserve`` is the fraction of a period kept for the safety filter and the arm."""

    rate_hz: float = 10.0
    silent_periods: int = 3
    max_steps: int = 50
    episodes: int = 1
    reserve: float = 0.2
    realtime: bool = True
    rt_priority: int = 0  # > 0: the loop thread runs under SCHED_FIFO at this priority (runtime/realtime.py)

    def __post_init__(self) -> None:
        if not 0.1 <= self.rate_hz <= 500:
            raise ValueError(f"rate_hz must be in [0.1, 500], got {self.rate_hz}")
        if self.silent_periods < 1 or self.max_steps < 1 or not 0 <= self.reserve < 1:
            raise ValueError("silent_periods and max_steps must be >= 1 and reserve in [0, 1)")
        if not 0 <= self.rt_priority <= 99:
            raise ValueError(f"rt_priority must be in 0..99 (0: normal scheduling), got {self.rt_priority}")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz


@dataclass
class EpisodeResult:
    steps: int = 0
    success: bool = False
    reason: str = ""
    held: int = 0
    missed_deadlines: int = 0
    overruns: int = 0
    nan_actions: int = 0
    clipped: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    work: LatencyHistogram = field(default_factory=LatencyHistogram)


class _EndEpisode(Exception):
    def __init__(self, reason: str, success: bool = False, stop_arm: bool = False, quit_loop: bool = False):
        super().__init__(reason)
        self.reason, self.success, self.stop_arm, self.quit_loop = reason, success, stop_arm, quit_loop


class ControlLoop:
    """Drives ``arm`` from ``camera`` through ``policy`` at ``cfg.rate_hz``; see the module docstring."""

    def __init__(self, arm: Arm, camera: Camera, projector: Callable[[Any], np.ndarray], policy: Policy,
                 safety: SafetyFilter, spec: PolicySpec, cfg: LoopConfig, recorder: Recorder | None = None,
                 keys: Any = None, clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = print):
        self.arm, self.camera, self.projector, self.policy = arm, camera, projector, policy
        self.safety, self.spec, self.cfg, self.recorder = safety, spec, cfg, recorder
        self.keys = keys if keys is not None else _NoKeys()
        self.clock, self.log = clock, log
        # the sim env builds its observations with the same builder (robot_stack/observation.py)
        self.build_obs = ObservationBuilder(spec.observation, spec.heightmap, projector)
        bind = getattr(arm, "bind_safety", None)
        if bind is not None:  # an arm that also limits steps against its commanded pose needs the same limits
            bind(safety.cfg)
        self.quit = False
        self.record_errors = 0

    # ---- episodes --------------------------------------------------------------------------------------
    def run(self, episodes: int | None = None) -> list[EpisodeResult]:
        freeze_gc_in_main_thread()
        results = []
        with fifo_priority(self.cfg.rt_priority, self.log):
            for index in range(self.cfg.episodes if episodes is None else episodes):
                if self.quit or not self._wait_for_start():
                    break
                try:
                    results.append(self.run_episode({"episode_index": index}))
                except ArmError as exc:  # a safety stop before the episode began (in reset)
                    if not _safety_stop(exc):
                        raise
                    self._safety_stopped(exc)
                    continue
                if results[-1].reason in ("camera_lost", "emergency_stop"):
                    break
        return results

    def _safety_stopped(self, exc: ArmError) -> str:
        """A protective stop waits for the operator (``u`` unlocks); an emergency stop ends the run."""
        stop = _safety_stop(exc)
        self.log(f"{stop.replace('_', ' ')}: {exc}")
        if stop == "emergency_stop":
            self.quit = True
        return stop

    def _wait_for_start(self) -> bool:
        if not getattr(self.keys, "enabled", False) or isinstance(self.keys, _NoKeys):
            return True
        self.log("press s to start an episode, q to quit")
        last_error = ""
        while True:
            for key in self.keys.poll():
                if key == "start":
                    return True
                if key == "quit":
                    self.quit = True
                    return False
                if key == "unlock":
                    self._unlock()
            try:
                self.arm.hold()
            except ArmError as exc:  # e.g. a protective stop waiting for u: said once, not every period
                if str(exc) != last_error:
                    self.log(f"arm: {exc}")
                last_error = str(exc)
                if _safety_stop(exc) == "emergency_stop":
                    self.quit = True
                    return False
            time.sleep(self.cfg.period)

    def _unlock(self) -> None:
        recover = getattr(self.arm, "recover", None)
        if recover is None:
            self.log("unlock: this arm has no safety stop to clear")
            return
        try:
            self.log(f"unlock: {recover()}")
        except ArmError as exc:
            self.log(f"unlock refused: {exc}")

    def run_episode(self, meta: dict[str, Any] | None = None) -> EpisodeResult:
        result = EpisodeResult()
        state = self.arm.reset()
        self.safety.reset(gripper_cmd=1.0 if state.gripper > 0.5 else -1.0)
        if self.recorder is not None:
            arm_meta = self.arm.episode_meta() if hasattr(self.arm, "episode_meta") else {}
            views = {"camera": self.camera.spec.to_dict(), "heightmap": self.spec.heightmap.to_dict()}
            self.recorder.start_episode({**views, **arm_meta, **(meta or {})})
        index = (meta or {}).get("episode_index")
        self.log("episode started" if index is None else f"episode {index} started")
        silent = 0
        try:
            next_deadline = self.clock() + self.cfg.period
            while result.steps < self.cfg.max_steps:
                state, silent = self._period(state, silent, next_deadline, result)
                next_deadline = self._wait(next_deadline, result)
            result.reason = "max_steps"
            result.success = bool(state.extra.get("success", False))
        except _EndEpisode as end:
            result.reason, result.success = end.reason, end.success
            self.quit = self.quit or end.quit_loop
            if end.stop_arm:
                self._stop_arm()
        except ArmError as exc:
            result.reason = _safety_stop(exc) or "error"
            self._stop_arm()
            if result.reason == "error":
                raise
            self._safety_stopped(exc)
        except BaseException as exc:
            result.reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            self._stop_arm()
            raise
        finally:
            self._end_recording(result)
        self.log(f"episode ended: {result.reason}, {result.steps} steps, success={result.success}, "
                 f"held={result.held}, missed={result.missed_deadlines}")
        return result

    def _end_recording(self, result: EpisodeResult) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.end_episode(result.success, reason=result.reason, held=result.held,
                                      missed_deadlines=result.missed_deadlines, overruns=result.overruns,
                                      clipped=result.clipped)
        except Exception as exc:
            self.record_errors += 1
            self.log(f"recorder could not end the episode: {type(exc).__name__}: {exc}")

    def _stop_arm(self) -> None:
        try:
            self.arm.stop()
        except ArmError as exc:
            self.log(f"arm stop failed: {exc}")

    # ---- one period --------------------------------------------------------------------------------------
    def _period(self, state: ArmState, silent: int, deadline: float, result: EpisodeResult) -> tuple[ArmState, int]:
        t0 = self.clock()
        self._operator_keys()
        if getattr(self.arm, "measure_each_period", False):
            state = self.arm.state()  # a real arm moved since the last call: the filter needs where it is now
        try:
            frame = self.camera.read()
            obs = self.build_obs(frame, state)
        except (CameraError, SpecError, OSError) as exc:
            self.log(f"camera lost: {exc}")
            raise _EndEpisode("camera_lost", stop_arm=True, quit_loop=True) from None
        action, policy_s = self._ask_policy(obs, deadline)
        if action is None:
            silent += 1
            result.missed_deadlines += 1
            command = self.safety.hold_command()
            new_state = self.arm.hold()
            result.held += 1
            report = None
        else:
            silent = 0
            command, report = self.safety(action, state)
            command, arm_clipped = self.arm.limit_command(command)
            new_state = self.arm.apply(command)
            result.nan_actions += int(report.nan)
            result.clipped += int(report.clipped or arm_clipped)
        result.steps += 1
        result.latency.record(policy_s)
        result.work.record(self.clock() - t0)
        self._record(obs, command, new_state, action is None, report, policy_s, self.clock() - t0, frame, state)
        if silent >= self.cfg.silent_periods:
            self.log(f"policy silent for {silent} periods: stopping the arm")
            raise _EndEpisode("policy_silent", stop_arm=True)
        if new_state.extra.get("done"):
            raise _EndEpisode("done", success=bool(new_state.extra.get("success", False)))
        return new_state, silent

    def _ask_policy(self, obs: dict[str, np.ndarray], deadline: float) -> tuple[np.ndarray | None, float]:
        """The policy's action, or None when it failed or would reach the arm after the deadline."""
        start = self.clock()
        cutoff = deadline - self.cfg.reserve * self.cfg.period
        try:
            action = self.policy.act(obs, timeout=max(cutoff - start, 0.0))
        except Exception as exc:  # timeouts, server errors, a dead connection: all mean "no action now"
            self.log(f"policy gave no action: {type(exc).__name__}: {exc}")
            return None, self.clock() - start
        elapsed = self.clock() - start
        if self.cfg.realtime and self.clock() > cutoff:
            return None, elapsed
        return np.asarray(action, dtype=np.float32).reshape(-1), elapsed

    def _operator_keys(self) -> None:
        for key in self.keys.poll():
            if key in ("stop", "quit"):
                raise _EndEpisode("operator_stop", stop_arm=True, quit_loop=key == "quit")
            if key in ("success", "failure"):
                raise _EndEpisode(f"operator_{key}", success=key == "success")

    def _record(self, obs, command, state: ArmState, held: bool, report, policy_s: float, step_s: float,
                frame: Any = None, observed: ArmState | None = None) -> None:
        """Hand the executed step to the recorder; a recorder failure is logged, never fatal to the loop.

        ``observed`` (the arm state the observation was built from) and, when the recorder keeps depth, the raw
        frame are stored too, so the step can be re-projected into another view (robot_stack.recorder.reproject)."""
        if self.recorder is None:
            return
        info = {"terminal": bool(state.extra.get("done", False)), "latency_policy": policy_s,
                "latency_step": step_s}
        if observed is not None:
            info["arm"] = arm_vector(observed)
        if frame is not None and getattr(self.recorder, "keep_depth", False):
            info["depth"] = frame.depth
        try:
            self.recorder.add_step(obs, self.safety.normalized(command), float(state.extra.get("reward", 0.0)), info)
        except Exception as exc:  # the arm must keep its schedule even if recording breaks
            self.record_errors += 1
            self.log(f"recorder refused a step: {type(exc).__name__}: {exc}")

    def _wait(self, deadline: float, result: EpisodeResult) -> float:
        """Sleep to the deadline; returns the next one. An overrun restarts the schedule from now."""
        now = self.clock()
        if not self.cfg.realtime:
            return now + self.cfg.period
        if now > deadline:
            result.overruns += 1
            return now + self.cfg.period
        time.sleep(deadline - now)
        return deadline + self.cfg.period


def _safety_stop(exc: BaseException) -> str:
    """"protective_stop" / "emergency_stop" for an arm's safety stop (hardware/ur.py), "" for other errors."""
    return str(getattr(exc, "safety_stop", "") or "")


class _NoKeys:
    enabled = False

    def poll(self) -> list[str]:
        return []

    def close(self) -> None:
        pass
