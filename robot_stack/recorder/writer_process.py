"""The recorder's writer process: appends steps from the shared-memory ring to the store, commits episodes.

Started by :class:`robot_stack.recorder.EpisodeRecorder` as ``python -m robot_stack.recorder.writer_process``
in its own session (a Ctrl-C meant for the control loop does not reach it). It reads requests from a pipe in
order; when the pipe reports end of file (the recording process is gone, even by SIGKILL) it discards the
episode in progress and exits, after committing every episode whose commit request it had received.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import time
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.recorder import store
from robot_stack.recorder.ring import Counters, Ring
from robot_stack.recorder.store import StoreError

log = logging.getLogger("robot_stack.recorder")

LOCK_WAIT_S = 30.0  # how long a new writer waits for one that is finishing a dead recorder's queue
NICENESS = 10
POLL_S = 0.005  # steps come without a message: the writer looks for new ones this often when idle
RESERVE_STEPS = 1024  # arrays grow this much beyond what they need: one metadata write per 1024 steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--requests-fd", type=int, required=True)
    parser.add_argument("--replies-fd", type=int, required=True)
    parser.add_argument("--counters", required=True, help="shared-memory name of the counters")
    parser.add_argument("--flush-steps", type=int, required=True)
    args = parser.parse_args()
    os.nice(NICENESS)  # the control loop that records wins every contest for a core
    # This process only maps segments the recording process made; the name is unlinked at once, so no
    # resource tracker (an extra process) is needed here.
    resource_tracker.register = resource_tracker.unregister = lambda *_a, **_k: None
    requests, replies = Connection(args.requests_fd, writable=False), Connection(args.replies_fd, readable=False)
    try:
        lock = lock_store(Path(args.path))
        group, header = store.open_group(args.path, mode="r+")
        repairs = store.repair(args.path, group, announce=False)  # the recording process announces them
        counters = Counters.attach(args.counters)
    except Exception as exc:  # noqa: BLE001 - reported to the recording process, which raises it
        replies.send(("error", str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"))
        return
    replies.send(("ready", repairs))
    try:
        StoreWriter(group, header, args.flush_steps, counters, replies).serve(requests)
    finally:
        os.close(lock)


def lock_store(path: Path, wait_s: float = LOCK_WAIT_S) -> int:
    """An exclusive lock on the store's ``meta/`` folder (one writer per store); returns its descriptor."""
    fd = os.open(path / "meta", os.O_RDONLY)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise StoreError(f"{path} is being written by another recorder (waited {wait_s:.0f} s)") from None
            time.sleep(0.02)


class StoreWriter:
    """Appends steps from the ring to the store and commits episodes, in request order.

    Big per-step arrays (heightmaps, frames) are appended straight from the ring every ``flush_steps`` steps,
    in whole chunks, and their slots are released only then: the ring is the writer's buffer, so those bytes
    are never copied in this process. The small per-step arrays are copied out and appended at the commit,
    which saves a read-modify-write of their chunks per block.
    """

    BULK_BYTES = 4096

    def __init__(self, group: Any, header: dict[str, Any], flush_steps: int, counters: Counters,
                 replies: Connection) -> None:
        self.group, self.header, self.flush_steps = group, header, flush_steps
        self.counters, self.replies = counters, replies
        self.ring: Ring | None = None
        self.bulk_keys: list[str] = []
        self.small_keys: list[str] = []
        self.taken = self.released = 0  # ring positions: steps read, and steps whose slots are free again
        self.end = store.read_state(group).n_steps
        self.current = self.failed = -1
        # This process is the store's only writer: its arrays are opened once (resizes update them in place).
        self.data = dict(group["data"].arrays())
        self.lengths = {key: arr.shape[0] for key, arr in self.data.items()}  # steps written, committed or not
        self.meta: dict[str, Any] = {}
        self._new_episode()

    def _new_episode(self) -> None:
        self.episode_steps = 0  # steps of the episode in progress taken from the ring
        self.bulk_written = 0  # of those, steps already appended to the big arrays
        self.small: dict[str, list[np.ndarray]] = {k: [] for k in self.small_keys}

    def serve(self, requests: Connection) -> None:
        while True:
            try:
                message = requests.recv() if requests.poll(POLL_S) else None
            except (EOFError, OSError):  # the recording process is gone: what it committed is done, drop the rest
                self._take_steps(self.counters["steps_put"])
                self._rollback()
                self._trim()
                return
            if message is None:
                self._take_steps(self.counters["steps_put"])
                continue
            kind, number, payload, steps_put = message
            if not self._handle(kind, number, payload, steps_put):
                return

    def _handle(self, kind: str, number: int, payload: Any, steps_put: int) -> bool:
        try:
            if kind == "ring":
                self._attach(*payload)
            self._take_steps(steps_put)  # the steps put before this message come first
            if kind == "commit":
                self._commit(number, payload)
            elif kind == "abort" and number == self.current:
                self._rollback()
            elif kind == "sync":
                self._reply(("synced", number))
            elif kind == "stop":
                self._rollback()
                self._trim()
                self._reply(("stopped", None))
                return False
        except Exception as exc:  # noqa: BLE001 - a writer failure must not kill the control loop
            self._fail(kind, number, exc)
            if kind in ("sync", "stop"):
                self._reply(("synced", number) if kind == "sync" else ("stopped", None))
            return kind != "stop"
        return True

    def _attach(self, name: str, layout: Any) -> None:
        self.ring = Ring.attach(name, layout)
        self.bulk_keys = self.ring.keys(self.BULK_BYTES, big=True)
        self.small_keys = self.ring.keys(self.BULK_BYTES, big=False)
        self.flush_steps = max(1, min(self.flush_steps, layout.slots // 2))  # never hold the whole ring
        self._new_episode()

    def _take_steps(self, until: int) -> None:
        while self.ring is not None and self.taken < until:
            number = self.ring.episode(self.taken)
            try:
                self._take_step(number)
            except Exception as exc:  # noqa: BLE001 - as in _handle: reported, the episode is dropped
                self._fail("step", number, exc)

    def _take_step(self, number: int) -> None:
        if number != self.current:
            self._rollback()  # an episode that was neither committed nor aborted (the recorder was closed)
            self.current = number
        position = self.taken
        self.taken += 1
        if number == self.failed:
            self._release(self.taken)
            return
        for key, value in self.ring.step(position, self.small_keys).items():
            self.small[key].append(value)
        self.episode_steps += 1
        if self.taken - self.released >= self.flush_steps:
            self._write_bulk(aligned=True)

    def _write_bulk(self, aligned: bool) -> None:
        """Append the steps still in the ring to the big arrays (up to a chunk boundary if ``aligned``)."""
        n = self.taken - self.released
        if aligned:
            n -= (self.end + self.bulk_written + n) % self._chunk_steps()  # end on a chunk boundary
            n = n if n > 0 else self.taken - self.released
        if n and self.bulk_keys:
            self._append({k: self.ring.block(k, self.released, n) for k in self.bulk_keys})
        self.bulk_written += n
        self._release(self.released + n)

    def _commit(self, number: int, info: dict[str, Any]) -> None:
        if number == self.failed or number != self.current:
            self.counters.add("episodes_discarded")
            return
        self._write_bulk(aligned=False)
        self._append({k: np.stack(v) for k, v in self.small.items()})
        store.commit(self.group, self.end + self.episode_steps, info, self.meta)
        self.end += self.episode_steps
        self.counters.add("steps_written", self.episode_steps)
        self.counters.add("episodes_committed")
        self.current = -1
        self._new_episode()

    def _chunk_steps(self) -> int:
        arrays = self.data
        target = int(self.header.get("chunk_bytes", store.DEFAULT_CHUNK_BYTES))
        return max((arrays[k].chunks[0] if k in arrays else store.chunk_steps(cell.shape[1:], cell.dtype, target)
                    for k, cell in ((k, self.ring.cells[k]) for k in self.bulk_keys)), default=1)

    def _append(self, block: dict[str, np.ndarray]) -> None:
        if block:
            store.append_steps(self.group, block, self.header, self.data, self.lengths, RESERVE_STEPS)
            self.counters.add("bytes_written", sum(v.nbytes for v in block.values()))

    def _release(self, upto: int) -> None:
        self.released = upto
        self.counters.publish("steps_released", upto)

    def _rollback(self) -> None:
        """Forget the episode in progress: free its slots; what it appended is overwritten by the next one."""
        self._release(self.taken)
        self.current = -1
        self._new_episode()
        self.lengths = dict.fromkeys(self.lengths, self.end)

    def _trim(self) -> None:
        """Cut every array to the committed steps (the reserve and any uncommitted tail)."""
        for arr in self.data.values():
            if arr.shape[0] > self.end:
                arr.resize((self.end, *arr.shape[1:]))

    def _reply(self, message: tuple) -> None:
        try:
            self.replies.send(message)
        except OSError:  # the recording process is gone; its queued episodes still get committed
            pass

    def _fail(self, kind: str, number: int, exc: Exception) -> None:
        msg = f"{kind} of episode {number} failed: {type(exc).__name__}: {exc}"
        log.error("recorder: %s", msg)
        self._reply(("failed", msg))
        try:
            self._rollback()
            self._trim()
        except Exception as exc2:  # noqa: BLE001
            self._reply(("failed", f"could not roll back to step {self.end}: {exc2}"))
        self.failed = number  # drop the rest of this episode


if __name__ == "__main__":
    main()
