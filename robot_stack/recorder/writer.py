"""``EpisodeRecorder``: logs episodes from the control loop without ever blocking it.

The caller's thread checks a step, copies it into a free slot of a shared-memory ring and sends the
slot number to a writer *process*, which appends steps to the store and commits episodes (see
:mod:`robot_stack.recorder.store` for the commit protocol). A process, not a thread: zarr's Python
work would otherwise hold the GIL for milliseconds while the control loop waits for it.

Full-ring policy: a step that finds no free slot is dropped and the episode it belongs to is marked
broken; ``end_episode`` then discards that episode (nothing of it becomes visible) and counts it in
``stats["episodes_discarded"]``. The caller never waits and a recorded episode never has a hole.
(``when_full="wait"`` makes ``add_step`` wait for a slot instead: for scripts such as ``collect``
that produce steps faster than the disk takes them and have no deadline.)

If the recording process dies (even by SIGKILL), the writer still commits every episode whose
``end_episode`` was called, discards the one in progress and exits. One writer per store at a time:
the writer holds an exclusive lock on the store's ``meta/`` folder while it runs.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.recorder import store
from robot_stack.recorder.ring import Counters, Ring, RingLayout
from robot_stack.recorder.store import LATENCY_PREFIX, OPTIONAL_KEYS, StoreError
from robot_stack.specs import ActionSpec, ObservationSpec, SpecError, mismatches

log = logging.getLogger("robot_stack.recorder")

START_TIMEOUT_S = 120.0
RING_MAX_BYTES = 256 << 20
PIPE_BYTES = 1 << 20
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class RecorderError(RuntimeError):
    """The recorder was used out of order (a step outside an episode) or its writer failed."""


@dataclass
class _Episode:
    number: int
    meta: dict[str, Any]
    signature: dict[str, tuple[tuple[int, ...], str]] | None = None
    layout: dict[str, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)  # the same, compared per step
    steps: int = 0
    broken: bool = False


class EpisodeRecorder:
    """Record episodes to a zarr store at ``path`` (created if missing, repaired if interrupted).

    ``meta`` holds store-level metadata (task, robot, camera...) that every episode inherits;
    ``start_episode(meta)`` adds per-episode entries (seed, policy id and version, variant...).
    ``add_step(obs, action, reward, info)``: ``info`` may carry ``terminal`` (bool), ``timestamp``
    (seconds; default: now), ``depth`` / ``color`` raw frames, ``arm`` (the observed arm state,
    ``robot_stack.observation.arm_vector``) and ``latency_*`` floats (seconds). ``keep_depth`` asks
    callers that have raw depth frames to pass them (what ``robot_stack.recorder.reproject`` needs).
    ``queue_steps`` ring slots (steps) sit between the caller and the writer; ``flush_steps`` steps
    are appended to the big arrays at a time.
    """

    def __init__(self, path: str | Path, obs_spec: ObservationSpec, action_spec: ActionSpec,
                 meta: dict[str, Any] | None = None, *, queue_steps: int = 128, flush_steps: int = 32,
                 compressor: dict[str, Any] | None = None, chunk_bytes: int = store.DEFAULT_CHUNK_BYTES,
                 when_full: str = "drop", keep_depth: bool = False) -> None:
        if queue_steps < 1 or flush_steps < 1:
            raise ValueError(f"queue_steps and flush_steps must be >= 1, got {queue_steps}, {flush_steps}")
        if when_full not in ("drop", "wait"):
            raise ValueError(f"when_full must be 'drop' or 'wait', got {when_full!r}")
        self.path = Path(path)
        self.obs_spec, self.action_spec = obs_spec, action_spec
        self.keep_depth = keep_depth  # callers that have raw frames (the control loop) pass them as info["depth"]
        self.meta = dict(meta or {})
        store._jsonable(self.meta)
        store.step_keys(obs_spec)  # refuses field names that clash with the recorder's own keys
        self.header, self._store_signature = self._check_or_create(compressor, chunk_bytes)
        self._queue_steps, self._wait_when_full = queue_steps, when_full == "wait"
        self._episode: _Episode | None = None
        self._numbered = 0
        self._queued = self._dropped = self._discarded = 0
        self._ring: Ring | None = None
        self._errors: list[str] = []
        self._sync_tokens = itertools.count()
        self._closed = False
        self._final_stats: dict[str, Any] | None = None
        self._start_writer(flush_steps)
        atexit.register(self.close)

    # -- opening ---------------------------------------------------------------------------------
    def _check_or_create(self, compressor: dict[str, Any] | None, chunk_bytes: int):
        """Read-only checks (not a store, newer schema, another spec) before anything is started."""
        if self.path.exists() and not store.is_store(self.path):
            if self.path.is_file() or any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists and is not a robot-stack episode store; refusing to write")
        if not store.is_store(self.path):
            group = store.create(self.path, self.obs_spec, self.action_spec, self.meta, compressor, chunk_bytes)
            return dict(group.attrs[store.ATTR]), None
        group, header = store.open_group(self.path, mode="r")
        store.check_spec(header, str(self.path))
        diffs = (mismatches(header["obs_spec"], self.obs_spec.to_dict())
                 + mismatches(header["action_spec"], self.action_spec.to_dict()))
        if diffs:
            raise SpecError(f"{self.path} holds episodes of another spec: " + "; ".join(diffs))
        arrays = dict(group["data"].arrays())
        signature = {k: (tuple(a.shape[1:]), np.dtype(a.dtype).str) for k, a in arrays.items()} if arrays else None
        return header, signature

    def _start_writer(self, flush_steps: int) -> None:
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        _widen_pipe(requests_w)
        self._counters = Counters.create()
        command = [sys.executable, "-m", "robot_stack.recorder.writer_process", str(self.path),
                   "--requests-fd", str(requests_r), "--replies-fd", str(replies_w),
                   "--counters", self._counters.name, "--flush-steps", str(flush_steps)]
        paths = [_PACKAGE_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self._process = subprocess.Popen(command, pass_fds=(requests_r, replies_w), start_new_session=True, env=env)
        os.close(requests_r)
        os.close(replies_w)
        self._requests = Connection(requests_w, readable=False)
        self._replies = Connection(replies_r, writable=False)
        kind, payload = self._reply(START_TIMEOUT_S, "start")
        if kind == "error":
            self._process.wait()
            raise StoreError(payload)
        self.repairs: list[str] = payload
        if self.repairs:
            log.warning("repaired interrupted store %s: %s", self.path, "; ".join(self.repairs))

    # -- the caller's side (never blocks) --------------------------------------------------------
    def start_episode(self, meta: dict[str, Any] | None = None) -> None:
        self._check_open()
        if self._episode is not None:
            raise RecorderError("start_episode called while an episode is in progress; call end_episode first")
        info = {**self.meta, **(meta or {})}
        store._jsonable(info)
        info.setdefault("start_time", time.time())
        self._episode = _Episode(self._numbered, info)
        self._numbered += 1

    def add_step(self, obs: dict[str, Any], action: Any, reward: float, info: dict[str, Any] | None = None) -> None:
        """Queue one step; raises ``SpecError`` (nothing queued) if it does not fit the episode."""
        self._check_open()
        ep = self._episode
        if ep is None:
            raise RecorderError("add_step called outside an episode; call start_episode first")
        step = self._make_step(obs, action, reward, info or {})
        if ep.signature is None:
            signature = {k: (v.shape, v.dtype.str) for k, v in step.items()}
            self._check_signature(signature)
            ep.signature, ep.layout = signature, {k: (v.shape, v.dtype) for k, v in step.items()}
        elif len(step) != len(ep.layout) or any(ep.layout.get(k) != (v.shape, v.dtype) for k, v in step.items()):
            signature = {k: (v.shape, v.dtype.str) for k, v in step.items()}
            raise SpecError("step does not match the episode's first step: " + _diff(ep.signature, signature))
        if ep.broken or not self._slot_free():
            ep.broken = True
            self._dropped += 1
            return
        if self._ring is None:
            self._ring = self._make_ring(step)
        # No message per step: the writer polls the "steps_put" counter (a pipe write would wake it on this core).
        self._ring.put(self._queued % self._ring.layout.slots, ep.number, step)
        self._queued += 1
        self._counters.publish("steps_put", self._queued)
        ep.steps += 1

    def _make_ring(self, step: dict[str, np.ndarray]) -> Ring:
        step_bytes = sum(v.nbytes for v in step.values())
        slots = min(self._queue_steps, max(2, RING_MAX_BYTES // step_bytes))
        if slots < self._queue_steps:
            log.info("recorder ring: %d slots of %d bytes (queue_steps=%d capped at %d MiB)", slots, step_bytes,
                     self._queue_steps, RING_MAX_BYTES >> 20)
        ring = Ring.create(RingLayout.for_step(step, slots))
        self._send(("ring", -1, (ring.name, ring.layout)))
        return ring

    def _slot_free(self) -> bool:
        """Whether the writer has released the next slot (waits for it with ``when_full='wait'``)."""
        slots = self._ring.layout.slots if self._ring is not None else self._queue_steps
        while self._queued - self._counters["steps_released"] >= slots:
            if not self._wait_when_full:
                return False
            if self._process.poll() is not None:
                raise RecorderError(f"the recorder's writer process exited (code {self._process.returncode})")
            time.sleep(0.001)
        return True

    def end_episode(self, success: bool | None = None, **meta: Any) -> None:
        """Commit the episode (in the background); an empty or broken episode is discarded."""
        self._check_open()
        ep = self._episode
        if ep is None:
            raise RecorderError("end_episode called outside an episode")
        self._episode = None
        info = {**ep.meta, **meta, "success": None if success is None else bool(success), "length": ep.steps}
        store._jsonable(info)
        if ep.broken or ep.steps == 0:
            why = "the writer's ring was full" if ep.broken else "it has no steps"
            log.warning("episode %d not recorded: %s", ep.number, why)
            self._discarded += 1
            self._send(("abort", ep.number, None))
            return
        self._send(("commit", ep.number, info))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is on disk."""
        self._check_open()
        token = next(self._sync_tokens)
        self._send(("sync", token, None))
        while True:
            kind, payload = self._reply(timeout, "flush")
            if kind == "synced" and payload == token:
                return

    def close(self) -> None:
        """Discard an unfinished episode, write everything queued, stop the writer."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._episode is not None:
            log.warning("closing with episode %d unfinished: it is discarded", self._episode.number)
            self._send(("abort", self._episode.number, None))
            self._episode = None
        try:
            self._send(("stop", -1, None))
            while self._reply(None, "close")[0] != "stopped":
                pass
        except RecorderError:
            pass  # the writer is gone; what it had committed stays
        self._process.wait()
        self._requests.close()
        self._replies.close()
        for shared in (self._ring, self._counters):
            if shared is not None:
                shared.unlink_if_left()
        final = self.stats
        for shared in (self._ring, self._counters):
            if shared is not None:
                shared.close()
        self._final_stats = final
        if self._errors:
            raise RecorderError("recorder writer failed: " + "; ".join(self._errors))

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def writer_pid(self) -> int | None:
        return self._process.pid

    @property
    def stats(self) -> dict[str, Any]:
        if self._final_stats is not None:
            return dict(self._final_stats, errors=list(self._errors))
        done = self._counters
        return {"steps_queued": self._queued, "steps_dropped": self._dropped, "steps_written": done["steps_written"],
                "bytes_written": done["bytes_written"], "episodes_committed": done["episodes_committed"],
                "episodes_discarded": self._discarded + done["episodes_discarded"],
                "queue_depth": self._queued - done["steps_released"],
                "errors": list(self._errors)}

    def _send(self, message: tuple) -> None:
        """A control message, tagged with the steps put so far: the writer takes those steps first."""
        try:
            self._requests.send((*message, self._queued))
        except OSError as exc:
            self._errors.append(f"the writer process is gone ({exc}); nothing more is recorded")
            raise RecorderError(self._errors[-1]) from exc

    def _reply(self, timeout: float | None, waiting_for: str) -> tuple[str, Any]:
        """The writer's next reply; its error reports are collected on the way."""
        while True:
            if not self._replies.poll(timeout):
                raise RecorderError(f"recorder writer did not answer ({waiting_for}) within {timeout} s")
            try:
                kind, payload = self._replies.recv()
            except (EOFError, OSError) as exc:
                raise RecorderError(f"the recorder's writer process exited ({waiting_for})") from exc
            if kind != "failed":
                return kind, payload
            self._errors.append(payload)

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderError("recorder is closed")

    def _make_step(self, obs: dict[str, Any], action: Any, reward: float, info: dict[str, Any]
                   ) -> dict[str, np.ndarray]:
        step = self.obs_spec.check(obs)
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (self.action_spec.dim,) or not np.isfinite(act).all():
            raise SpecError(f"action must be {self.action_spec.dim} finite numbers {self.action_spec.names}, "
                            f"got {np.asarray(action).tolist()}")
        if not math.isfinite(reward):
            raise SpecError(f"reward must be a finite number, got {reward!r}")
        step["action"] = act
        step["reward"] = np.float32(reward)
        step["terminal"] = np.bool_(info.get("terminal", False))
        step["timestamp"] = np.float64(info.get("timestamp", time.time()))
        for key, value in info.items():
            if key in OPTIONAL_KEYS and value is not None:
                step[key] = np.asarray(value)
            elif key.startswith(LATENCY_PREFIX):
                step[key] = np.float32(value)
        return step

    def _check_signature(self, signature: dict[str, tuple[tuple[int, ...], str]]) -> None:
        if self._store_signature is None:  # the first step ever fixes the store's keys
            self._store_signature = dict(signature)
            return
        have = {k: (tuple(s), np.dtype(d).str) for k, (s, d) in self._store_signature.items()}
        if have != signature:
            raise SpecError(f"step keys do not match the store's arrays in {self.path}: " + _diff(have, signature))


def _widen_pipe(fd: int) -> None:
    """Room for many queued messages (Linux; elsewhere the default pipe size)."""
    try:
        fcntl.fcntl(fd, 1031, PIPE_BYTES)  # F_SETPIPE_SZ
    except OSError:
        pass


def _diff(want: dict[str, tuple], got: dict[str, tuple]) -> str:
    parts = []
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing:
        parts.append(f"missing keys {missing}")
    if extra:
        parts.append(f"unexpected keys {extra}")
    for k in sorted(set(want) & set(got)):
        if want[k] != got[k]:
            parts.append(f"{k}: expected shape/dtype {want[k]}, got {got[k]}")
    return "; ".join(parts)
