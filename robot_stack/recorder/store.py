"""The on-disk episode store: zarr v3 layout, atomic commit, repair and validation.

Layout (see ``docs/recorder.md``)::

    zarr.json                 root attrs["robot_stack"] = {format, schema_version, obs_spec, action_spec, meta, ...}
    data/<key>                one array per key, concatenated over time (axis 0 = step)
    meta/episode_ends         int64[E], exclusive end step of each committed episode (fill value -1)
    meta/episodes             string[E], one JSON object of metadata per committed episode

Commit protocol: an episode's steps are appended to every ``data/`` array first, then its metadata
to ``meta/episodes``, and last its end to ``meta/episode_ends``. zarr's ``LocalStore`` writes every
file to a temporary name and renames it into place, so each chunk and each ``zarr.json`` is either
the old or the new version. Readers trust only the valid prefix of ``episode_ends`` (strictly
increasing, not the fill value, not beyond any data array), so a kill at any moment leaves at most
uncommitted steps behind, which :func:`repair` truncates when a writer opens the store again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from robot_stack.specs import SPEC_VERSION, ActionSpec, ObservationSpec, SpecError, check_spec_version

log = logging.getLogger("robot_stack.recorder")

# Write every chunk, also one that equals the fill value (an episode of zero rewards): then a chunk file that is
# missing is always damage, and `validate` can say so without false alarms.
zarr.config.set({"array.write_empty_chunks": True})

FORMAT = "robot_stack.episodes"
SCHEMA_VERSION = 1
ATTR = "robot_stack"
ENDS = "meta/episode_ends"
INFO = "meta/episodes"
# Keys every store has besides the observation fields.
CORE_KEYS = ("action", "reward", "terminal", "timestamp")
# Per-step keys a caller may add through ``info`` (optional, fixed by an episode's first step): raw frames, and
# the arm state the observation was built from (robot_stack.observation.arm_vector), which re-projection needs.
OPTIONAL_KEYS = ("depth", "color", "arm")
LATENCY_PREFIX = "latency_"
RESERVED = CORE_KEYS + OPTIONAL_KEYS
# Chosen by ``robot-stack bench recorder`` (see docs/recorder.md for the measured table).
DEFAULT_COMPRESSOR = {"cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"}
DEFAULT_CHUNK_BYTES = 512 * 1024
MIN_CHUNK_STEPS = 8
MAX_CHUNK_STEPS = 4096


class StoreError(SpecError):
    """A path that is not a usable episode store; the message names the problem."""


def compressor(spec: dict[str, Any] | None = None) -> BloscCodec:
    spec = dict(DEFAULT_COMPRESSOR if spec is None else spec)
    return BloscCodec(cname=spec["cname"], clevel=int(spec["clevel"]), shuffle=spec["shuffle"])


def chunk_steps(step_shape: tuple[int, ...], dtype: np.dtype, target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Steps per chunk: the power of two that holds at most ``target_bytes`` raw bytes, within [8, 4096].

    At least 8 steps, so that a raw camera frame (600 KiB) is not one chunk per step: zarr's cost per
    chunk write is mostly fixed, and a training read rarely touches those frames."""
    step_bytes = max(1, int(np.prod(step_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    steps = 1 << max(0, int(target_bytes // step_bytes).bit_length() - 1)
    return int(min(MAX_CHUNK_STEPS, max(MIN_CHUNK_STEPS, steps)))


def is_store(path: str | Path) -> bool:
    p = Path(path)
    return (p / "zarr.json").is_file()


def _header(group: zarr.Group, where: str) -> dict[str, Any]:
    head = group.attrs.get(ATTR)
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise StoreError(f"{where} is a zarr group but not a robot-stack episode store (no '{ATTR}' header)")
    version = head.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version!r}; this robot-stack reads versions up to "
                         f"{SCHEMA_VERSION}: upgrade robot-stack to read it")
    return head


def check_spec(header: dict[str, Any], where: str) -> None:
    """Refuse a store whose observations were made under another spec version (stores before version 2 carry
    none: version 1)."""
    check_spec_version(header.get("spec_version", 1), f"episode store {where}",
                       "its observations are of another layout; re-project a store with raw depth and arm state "
                       "(`robot-stack data reproject`) or record it again")


def open_group(path_or_url: str | Path, mode: str = "r", storage_options: dict | None = None
               ) -> tuple[zarr.Group, dict[str, Any]]:
    """Open an existing store (local path or fsspec URL), check its header; ``(group, header)``."""
    where = str(path_or_url)
    local = "://" not in where or where.startswith("file://")
    if local:
        p = Path(where.removeprefix("file://"))
        if not p.exists():
            raise FileNotFoundError(f"no episode store at {where}")
        if not is_store(p):
            raise StoreError(f"{where} is not a robot-stack episode store (no zarr.json)")
    try:
        kwargs = {"storage_options": storage_options} if storage_options and not local else {}
        group = zarr.open_group(where if not local else str(p), mode=mode, **kwargs)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{where} is not a readable zarr v3 group: {exc}") from exc
    return group, _header(group, where)


def step_keys(obs_spec: ObservationSpec) -> tuple[str, ...]:
    clash = [n for n in obs_spec.names if n in RESERVED or n.startswith(LATENCY_PREFIX)]
    if clash:
        raise SpecError(f"observation field names {clash} clash with the recorder's reserved keys {RESERVED}")
    return tuple(obs_spec.names) + CORE_KEYS


def valid_ends(ends: np.ndarray, n_info: int, data_len: int) -> int:
    """Length of the committed prefix of ``episode_ends``."""
    n, prev = 0, 0
    for e in np.asarray(ends, dtype=np.int64)[:n_info]:
        if e <= prev or e > data_len:
            break
        n, prev = n + 1, int(e)
    return n


@dataclass
class StoreState:
    """What a reader may trust: ``n_episodes`` committed episodes ending at ``ends``."""

    ends: np.ndarray
    infos: list[dict[str, Any]]
    data_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def n_episodes(self) -> int:
        return len(self.ends)

    @property
    def n_steps(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0


def read_state(group: zarr.Group) -> StoreState:
    """The committed episodes of an open group (never trusts data beyond ``episode_ends``)."""
    data = group["data"]
    lengths = {name: int(arr.shape[0]) for name, arr in data.arrays()}
    ends_arr, info_arr = group[ENDS], group[INFO]
    n_info = int(info_arr.shape[0])
    ends = np.asarray(ends_arr[:], dtype=np.int64) if ends_arr.shape[0] else np.zeros(0, np.int64)
    data_len = min(lengths.values()) if lengths else 0
    n = valid_ends(ends, n_info, data_len)
    infos = [json.loads(s) for s in info_arr[:n]] if n else []
    return StoreState(ends[:n].copy(), infos, lengths)


def create(path: str | Path, obs_spec: ObservationSpec, action_spec: ActionSpec, meta: dict[str, Any],
           compressor_spec: dict[str, Any] | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> zarr.Group:
    """A new empty store with the header and the ``meta/`` arrays (data arrays come with the first step)."""
    step_keys(obs_spec)
    header = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "spec_version": SPEC_VERSION,
              "obs_spec": obs_spec.to_dict(),
              "action_spec": action_spec.to_dict(), "meta": _jsonable(meta),
              "compressor": dict(compressor_spec or DEFAULT_COMPRESSOR), "chunk_bytes": int(chunk_bytes)}
    # Built under a temporary name and renamed into place: a kill never leaves a half-made store.
    final = Path(path)
    tmp = final.with_name(f".{final.name}.creating-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w-")
    group.create_group("data")
    group.create_array(ENDS, shape=(0,), chunks=(4096,), dtype="int64", fill_value=-1)
    group.create_array(INFO, shape=(0,), chunks=(1024,), dtype=str)
    group.attrs[ATTR] = header
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    os.rename(tmp, final)
    return zarr.open_group(str(final), mode="r+")


def create_data_array(group: zarr.Group, key: str, step_shape: tuple[int, ...], dtype: np.dtype,
                      header: dict[str, Any]) -> zarr.Array:
    steps = chunk_steps(step_shape, dtype, int(header.get("chunk_bytes", DEFAULT_CHUNK_BYTES)))
    fill = False if np.dtype(dtype) == np.bool_ else 0
    return group.create_array(f"data/{key}", shape=(0, *step_shape), chunks=(steps, *step_shape), dtype=dtype,
                              compressors=compressor(header.get("compressor")), fill_value=fill)


def append_steps(group: zarr.Group, arrays: dict[str, np.ndarray], header: dict[str, Any],
                 opened: dict[str, zarr.Array] | None = None, lengths: dict[str, int] | None = None,
                 reserve: int = 0) -> None:
    """Append a block of steps to the ``data/`` arrays (each key its own length), creating missing ones.

    A writer passes ``opened`` (the ``data/`` arrays it keeps open: listing the group reads every array's
    metadata; arrays made here are added) and ``lengths`` (each array's length in steps, updated here; an
    array may be longer, its tail unused). An array that must grow grows by ``reserve`` steps more than it
    needs, which saves a metadata write per append; readers never look beyond ``episode_ends`` and the
    writer trims the tail when it closes."""
    opened = dict(group["data"].arrays()) if opened is None else opened
    targets = []
    for key, value in arrays.items():
        if key not in opened:
            opened[key] = create_data_array(group, key, value.shape[1:], value.dtype, header)
        arr = opened[key].async_array
        start = arr.shape[0] if lengths is None else lengths.get(key, arr.shape[0])
        targets.append((arr, value, start))
    # One event-loop round trip per stage, every array concurrently (zarr's async API).
    sync(_gather(*(arr.resize((start + len(value) + reserve, *arr.shape[1:]))
                   for arr, value, start in targets if arr.shape[0] < start + len(value))))
    sync(_gather(*(_write_chunks(arr, value, start) for arr, value, start in targets)))
    if lengths is not None:
        lengths.update({key: start + len(value) for key, (_a, value, start) in zip(arrays, targets, strict=True)})


async def _write_chunks(arr: Any, value: np.ndarray, start: int) -> None:
    """Write ``value`` at step ``start`` of ``arr`` one chunk at a time: zarr encodes a value that is exactly
    one chunk as it is, while a value spanning chunks is first copied into a new buffer per chunk."""
    step = arr.chunks[0]
    edges = [start, *range((start // step + 1) * step, start + len(value), step), start + len(value)]
    await _gather(*(arr.setitem(slice(a, b), value[a - start:b - start]) for a, b in itertools.pairwise(edges)))


async def _gather(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))


def commit(group: zarr.Group, end: int, info: dict[str, Any], opened: dict[str, zarr.Array] | None = None) -> None:
    """Make the episode ending at step ``end`` visible: metadata first, ``episode_ends`` last.

    ``opened``: a cache of the ``meta/`` arrays kept by a writer (filled on first use)."""
    opened = {} if opened is None else opened
    for key in (INFO, ENDS):
        if key not in opened:
            opened[key] = group[key]
    opened[INFO].append(np.array([json.dumps(_jsonable(info), sort_keys=True)], dtype=object))
    opened[ENDS].append(np.array([end], dtype=np.int64))


def repair(path: str | Path, group: zarr.Group, announce: bool = True) -> list[str]:
    """Truncate whatever a killed writer left beyond the last committed episode; returns what was done."""
    actions = [f"removed leftover temporary file {p.relative_to(path)}" for p in _remove_partials(Path(path))]
    state = read_state(group)
    end = state.n_steps
    short = {k: n for k, n in state.data_lengths.items() if n < end}
    if short:
        raise StoreError(f"{path}: data arrays shorter than the committed episodes ({end} steps): {short}; "
                         "this is not a crash leftover, run 'robot-stack data validate'")
    for name, arr in group["data"].arrays():
        if arr.shape[0] > end:
            actions.append(f"discarded {arr.shape[0] - end} uncommitted steps of data/{name}")
            arr.resize((end, *arr.shape[1:]))
    for key in (ENDS, INFO):
        arr = group[key]
        if arr.shape[0] > state.n_episodes:
            actions.append(f"discarded {arr.shape[0] - state.n_episodes} uncommitted entries of {key}")
            arr.resize((state.n_episodes,))
    if actions and announce:
        log.warning("repaired interrupted store %s: %s", path, "; ".join(actions))
    return actions


def _remove_partials(root: Path) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".partial"):
                p = Path(dirpath) / name
                p.unlink(missing_ok=True)
                found.append(p)
    return found


def _jsonable(value: Any) -> Any:
    """Metadata as plain JSON (numpy scalars and arrays, tuples and spec objects converted)."""
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise SpecError(f"episode metadata value {value!r} ({type(value).__name__}) cannot be stored as JSON")
