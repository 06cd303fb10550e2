"""``EpisodeRecorder``: logs episodes from the control loop without ever blocking it.

The caller's thread only checks a step and puts a copy on a bounded queue; a background thread
appends steps to the store and commits episodes (see :mod:`robot_stack.recorder.store` for the
commit protocol). Full-queue policy: a step that finds the queue full is dropped and the episode it
belongs to is marked broken; ``end_episode`` then discards that episode (nothing of it becomes
visible) and counts it in ``stats["episodes_discarded"]``. The caller never waits and a recorded
episode never has a hole.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.recorder import store
from robot_stack.recorder.store import LATENCY_PREFIX, OPTIONAL_KEYS, StoreError
from robot_stack.specs import ActionSpec, ObservationSpec, SpecError, mismatches

log = logging.getLogger("robot_stack.recorder")


class RecorderError(RuntimeError):
    """The recorder was used out of order (a step outside an episode) or its writer failed."""


@dataclass
class _Episode:
    number: int
    meta: dict[str, Any]
    signature: dict[str, tuple[tuple[int, ...], str]] | None = None
    steps: int = 0
    broken: bool = False


@dataclass
class _Stats:
    steps_queued: int = 0
    steps_dropped: int = 0
    steps_written: int = 0
    bytes_written: int = 0
    episodes_committed: int = 0
    episodes_discarded: int = 0
    errors: list[str] = field(default_factory=list)


class EpisodeRecorder:
    """Record episodes to a zarr store at ``path`` (created if missing, repaired if interrupted).

    ``meta`` holds store-level metadata (task, robot, camera...) that every episode inherits;
    ``start_episode(meta)`` adds per-episode entries (seed, policy id and version, variant...).
    ``add_step(obs, action, reward, info)``: ``info`` may carry ``terminal`` (bool), ``timestamp``
    (seconds; default: now), ``depth`` / ``color`` raw frames and ``latency_*`` floats (seconds).
    """

    def __init__(self, path: str | Path, obs_spec: ObservationSpec, action_spec: ActionSpec,
                 meta: dict[str, Any] | None = None, *, queue_steps: int = 256, flush_steps: int = 32,
                 compressor: dict[str, Any] | None = None, chunk_bytes: int = store.DEFAULT_CHUNK_BYTES) -> None:
        if queue_steps < 1 or flush_steps < 1:
            raise ValueError(f"queue_steps and flush_steps must be >= 1, got {queue_steps}, {flush_steps}")
        self.path = Path(path)
        self.obs_spec, self.action_spec = obs_spec, action_spec
        self.meta = dict(meta or {})
        store._jsonable(self.meta)
        self._keys = store.step_keys(obs_spec)
        self.group, self.header, self.repairs = self._open(compressor, chunk_bytes)
        self._store_signature = self._existing_signature()
        self._flush_steps = flush_steps
        self._queue: queue.Queue = queue.Queue(maxsize=queue_steps)
        self._stats = _Stats()
        self._episode: _Episode | None = None
        self._numbered = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="episode-recorder", daemon=True)
        self._thread.start()

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, compressor: dict[str, Any] | None, chunk_bytes: int):
        if self.path.exists() and not store.is_store(self.path):
            if self.path.is_file() or any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists and is not a robot-stack episode store; refusing to write")
        if not store.is_store(self.path):
            group = store.create(self.path, self.obs_spec, self.action_spec, self.meta, compressor, chunk_bytes)
            return group, dict(group.attrs[store.ATTR]), []
        group, header = store.open_group(self.path, mode="r+")
        diffs = (mismatches(header["obs_spec"], self.obs_spec.to_dict())
                 + mismatches(header["action_spec"], self.action_spec.to_dict()))
        if diffs:
            raise SpecError(f"{self.path} holds episodes of another spec: " + "; ".join(diffs))
        return group, header, store.repair(self.path, group)

    def _existing_signature(self) -> dict[str, tuple[tuple[int, ...], str]] | None:
        arrays = dict(self.group["data"].arrays())
        if not arrays:
            return None
        return {k: (tuple(a.shape[1:]), str(a.dtype)) for k, a in arrays.items()}

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
        signature = {k: (v.shape, v.dtype.str) for k, v in step.items()}
        if ep.signature is None:
            self._check_signature(signature)
            ep.signature = signature
        elif signature != ep.signature:
            raise SpecError("step does not match the episode's first step: " + _diff(ep.signature, signature))
        if ep.broken:
            self._stats.steps_dropped += 1
            return
        try:
            self._queue.put_nowait(("step", ep.number, step))
        except queue.Full:
            ep.broken = True
            self._stats.steps_dropped += 1
            return
        ep.steps += 1
        self._stats.steps_queued += 1

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
            why = "the writer queue was full" if ep.broken else "it has no steps"
            log.warning("episode %d not recorded: %s", ep.number, why)
            self._stats.episodes_discarded += 1
            self._put_blocking(("abort", ep.number, None))
            return
        self._put_blocking(("commit", ep.number, info))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is on disk."""
        done = threading.Event()
        self._put_blocking(("sync", -1, done))
        if not done.wait(timeout):
            raise RecorderError(f"recorder did not flush within {timeout} s")

    def close(self) -> None:
        """Discard an unfinished episode, write everything queued, stop the writer."""
        if self._closed:
            return
        if self._episode is not None:
            log.warning("closing with episode %d unfinished: it is discarded", self._episode.number)
            self._put_blocking(("abort", self._episode.number, None))
            self._episode = None
        self._put_blocking(("stop", -1, None))
        self._thread.join()
        self._closed = True
        if self._stats.errors:
            raise RecorderError("recorder writer failed: " + "; ".join(self._stats.errors))

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, Any]:
        s = self._stats
        return {"steps_queued": s.steps_queued, "steps_dropped": s.steps_dropped, "steps_written": s.steps_written,
                "bytes_written": s.bytes_written, "episodes_committed": s.episodes_committed,
                "episodes_discarded": s.episodes_discarded, "queue_depth": self._queue.qsize(),
                "errors": list(s.errors)}

    def _put_blocking(self, item: tuple) -> None:
        # Control messages are rare and tiny; they wait for room so a commit is never lost.
        self._queue.put(item)

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderError("recorder is closed")

    def _make_step(self, obs: dict[str, Any], action: Any, reward: float, info: dict[str, Any]
                   ) -> dict[str, np.ndarray]:
        checked = self.obs_spec.check(obs)
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (self.action_spec.dim,) or not np.all(np.isfinite(act)):
            raise SpecError(f"action must be {self.action_spec.dim} finite numbers {self.action_spec.names}, "
                            f"got {np.asarray(action).tolist()}")
        if not np.isfinite(reward):
            raise SpecError(f"reward must be a finite number, got {reward!r}")
        step = {k: v.copy() for k, v in checked.items()}
        step["action"] = act.copy()
        step["reward"] = np.asarray(reward, dtype=np.float32)
        step["terminal"] = np.asarray(bool(info.get("terminal", False)))
        step["timestamp"] = np.asarray(info.get("timestamp", time.time()), dtype=np.float64)
        for key, value in info.items():
            if key in OPTIONAL_KEYS and value is not None:
                step[key] = np.array(value, copy=True)
            elif key.startswith(LATENCY_PREFIX):
                step[key] = np.asarray(value, dtype=np.float32)
        return step

    def _check_signature(self, signature: dict[str, tuple[tuple[int, ...], str]]) -> None:
        if self._store_signature is None:  # the first step ever fixes the store's keys
            self._store_signature = dict(signature)
            return
        have = {k: (tuple(s), np.dtype(d).str) for k, (s, d) in self._store_signature.items()}
        if have != signature:
            raise SpecError(f"step keys do not match the store's arrays in {self.path}: " + _diff(have, signature))

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        pending: list[dict[str, np.ndarray]] = []
        written = 0  # steps of the current episode already appended (uncommitted)
        current, failed = -1, -1
        end = store.read_state(self.group).n_steps
        while True:
            kind, number, payload = self._queue.get()
            try:
                if number == failed and kind in ("step", "commit"):
                    if kind == "commit":
                        self._stats.episodes_discarded += 1
                    continue
                if kind == "step":
                    if number != current:
                        current, pending, written = number, [], 0
                    pending.append(payload)
                    if len(pending) >= self._flush_steps:
                        written += self._write(pending)
                        pending = []
                elif kind == "commit" and number == current:
                    written += self._write(pending)
                    end += written
                    store.commit(self.group, end, payload)
                    self._stats.episodes_committed += 1
                    current, pending, written = -1, [], 0
                elif kind == "abort":
                    if number == current and written:
                        self._truncate(end)
                    current, pending, written = -1, [], 0
                elif kind == "sync":
                    payload.set()
                elif kind == "stop":
                    if written:
                        self._truncate(end)
                    return
            except Exception as exc:  # noqa: BLE001 - a writer failure must not kill the control loop
                msg = f"{kind} of episode {number} failed: {type(exc).__name__}: {exc}"
                log.error("recorder: %s", msg)
                self._stats.errors.append(msg)
                try:
                    self._truncate(end)
                except Exception as exc2:  # noqa: BLE001
                    self._stats.errors.append(f"could not roll back to step {end}: {exc2}")
                failed, current, pending, written = number, -1, [], 0  # drop the rest of this episode
                if kind == "sync":
                    payload.set()
                if kind == "stop":
                    return

    def _write(self, steps: list[dict[str, np.ndarray]]) -> int:
        if not steps:
            return 0
        block = {k: np.stack([s[k] for s in steps]) for k in steps[0]}
        store.append_steps(self.group, block, self.header)
        self._stats.steps_written += len(steps)
        self._stats.bytes_written += sum(v.nbytes for v in block.values())
        return len(steps)

    def _truncate(self, end: int) -> None:
        for _name, arr in self.group["data"].arrays():
            if arr.shape[0] > end:
                arr.resize((end, *arr.shape[1:]))


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
