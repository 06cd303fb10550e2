"""A ring of step slots in shared memory: the control loop copies a step in, the writer process copies it out.

The layout is key-major: each key owns ``slots`` contiguous step-sized cells, so a slot of a key is a plain
numpy view. The creator drops the segment from its resource tracker and the writer unlinks the name as soon as
it has mapped it: from then on the memory lives exactly as long as the two mappings, whoever dies first.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory

import numpy as np

ALIGN = 64
MADV_POPULATE_WRITE = 23
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
EPISODE = "__episode__"


@dataclass(frozen=True)
class RingLayout:
    """Where each key's cells sit in the segment: ``(key, step shape, dtype str, byte offset)``; the cells of
    ``EPISODE`` hold the episode number of the step in each slot."""

    slots: int
    fields: tuple[tuple[str, tuple[int, ...], str, int], ...]
    nbytes: int

    @classmethod
    def for_step(cls, step: dict[str, np.ndarray], slots: int) -> RingLayout:
        fields, offset = [], 0
        for key, value in {EPISODE: np.int64(0), **step}.items():
            fields.append((key, tuple(value.shape), value.dtype.str, offset))
            offset += -(-value.nbytes * slots // ALIGN) * ALIGN
        return cls(slots, tuple(fields), max(offset, ALIGN))



class _Segment:
    """A shared-memory segment made by the recording process and unlinked by the writer once mapped."""

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        self._shm = shm

    @property
    def name(self) -> str:
        return self._shm.name

    def unlink_if_left(self) -> None:
        """Remove the name if the writer never got to it (it died before mapping the segment)."""
        try:
            resource_tracker.register(self._shm._name, "shared_memory")  # noqa: SLF001 - unlink() unregisters
            self._shm.unlink()
        except FileNotFoundError:
            resource_tracker.unregister(self._shm._name, "shared_memory")  # noqa: SLF001

    def _close(self) -> None:
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the process
            pass


class Counters(_Segment):
    """Monotonic int64 counters in shared memory, each written by one side only (no lock needed)."""

    NAMES = ("steps_put", "steps_released", "steps_written", "bytes_written", "episodes_committed",
             "episodes_discarded")

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        super().__init__(shm)
        self.values = np.ndarray((len(self.NAMES),), np.int64, buffer=shm.buf)
        self._fence = threading.Lock()

    @classmethod
    def create(cls) -> Counters:
        shm = _create_untracked(len(cls.NAMES) * 8)
        counters = cls(shm)
        counters.values[:] = 0
        return counters

    @classmethod
    def attach(cls, name: str) -> Counters:
        return cls(_attach_and_unlink(name))

    def add(self, key: str, n: int = 1) -> None:
        self.publish(key, self[key] + n)

    def publish(self, key: str, value: int) -> None:
        # Stores to the ring before this one must be visible to the other process first. x86 keeps store
        # order; on weaker CPUs (ARM) taking a lock is a full barrier.
        with self._fence:
            pass
        self.values[self.NAMES.index(key)] = value

    def __getitem__(self, key: str) -> int:
        value = int(self.values[self.NAMES.index(key)])
        with self._fence:  # reads of the ring after this one must not be served before it (see publish)
            pass
        return value

    def close(self) -> None:
        self.values = self.values.copy()  # the last figures stay readable after the segment is gone
        self._close()


class Ring(_Segment):
    """Numpy views ``cells[key][slot]`` over a shared-memory segment laid out by ``layout``."""

    def __init__(self, layout: RingLayout, shm: shared_memory.SharedMemory) -> None:
        super().__init__(shm)
        self.layout = layout
        self.cells = {key: np.ndarray((layout.slots, *shape), np.dtype(dtype), buffer=shm.buf, offset=offset)
                      for key, shape, dtype, offset in layout.fields}

    @classmethod
    def create(cls, layout: RingLayout) -> Ring:
        ring = cls(layout, _create_untracked(layout.nbytes))
        # A first touch of a page costs a fault (~3 us in a VM): 150 of them per 600 KiB frame would land in the
        # control loop's first pass over the ring. A side thread maps every page ahead of it instead.
        threading.Thread(target=ring.populate, name="ring-populate", daemon=True).start()
        return ring

    @classmethod
    def attach(cls, name: str, layout: RingLayout) -> Ring:
        ring = cls(layout, _attach_and_unlink(name))
        ring.populate()
        return ring

    def populate(self) -> None:
        """Fault in every page of this process's mapping without writing to it (Linux >= 5.14; else a no-op).

        Through ctypes, which lets go of the GIL for the call: the loop keeps running while the kernel works."""
        with contextlib.suppress(AttributeError, OSError, ValueError):
            buffer = np.frombuffer(self._shm.buf, np.uint8)
            _LIBC.madvise(ctypes.c_void_p(buffer.ctypes.data), ctypes.c_size_t(buffer.nbytes), MADV_POPULATE_WRITE)

    def put(self, slot: int, episode: int, step: dict[str, np.ndarray]) -> None:
        self.cells[EPISODE][slot] = episode
        for key, value in step.items():
            self.cells[key][slot] = value

    def episode(self, position: int) -> int:
        return int(self.cells[EPISODE][position % self.layout.slots])

    def step(self, position: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Copies of ``keys`` of the step at ``position`` (a count of steps since the ring began)."""
        slot = position % self.layout.slots
        return {k: self.cells[k][slot, ...].copy() for k in keys}

    def block(self, key: str, start: int, n: int) -> np.ndarray:
        """Steps ``[start, start + n)`` of ``key``: a view into the ring, or a copy where they wrap around."""
        first = start % self.layout.slots
        cells = self.cells[key]
        if first + n <= self.layout.slots:
            return cells[first:first + n]
        return np.concatenate([cells[first:], cells[:first + n - self.layout.slots]])

    def keys(self, min_step_bytes: int = 0, big: bool = True) -> list[str]:
        """The step keys whose per-step size is at least ``min_step_bytes`` (``big``) or below it."""
        return [k for k, cell in self.cells.items()
                if k != EPISODE and (cell[0].nbytes >= min_step_bytes) == big]

    def close(self) -> None:
        self.cells = {}
        self._close()


def _create_untracked(size: int) -> shared_memory.SharedMemory:
    shm = shared_memory.SharedMemory(create=True, size=size)
    # The writer unlinks the name once mapped; the tracker must not unlink it again if this process dies.
    resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 - public only from Python 3.13
    return shm


def _attach_and_unlink(name: str) -> shared_memory.SharedMemory:
    shm = shared_memory.SharedMemory(name=name)
    shm.unlink()
    return shm
