"""``validate(path)``: every inconsistency of an episode store, each named in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import product
from pathlib import Path

import numpy as np
import zarr

from robot_stack.recorder import store
from robot_stack.specs import ObservationSpec


def validate(path: str | Path, progress: Callable[[str], None] | None = None) -> list[str]:
    """Problems found in the store at ``path`` (empty list: consistent). Reads every chunk once."""
    root = Path(path)
    try:
        group, header = store.open_group(root, "r")
    except (store.StoreError, FileNotFoundError) as exc:
        return [str(exc)]
    issues = [f"leftover temporary file {p.relative_to(root)} (an interrupted write)"
              for p in root.rglob("*.partial")]
    arrays = _arrays(group)
    obs_spec = ObservationSpec.from_dict(header["obs_spec"])
    required = [f"data/{k}" for k in store.step_keys(obs_spec)] + [store.ENDS, store.INFO]
    issues += [f"missing array {name}" for name in required if name not in arrays]
    issues += _check_shapes(arrays, obs_spec)
    data_lens = {n: a.shape[0] for n, a in arrays.items() if n.startswith("data/")}
    if len(set(data_lens.values())) > 1:
        issues.append(f"data arrays have different lengths: {data_lens}")
    for name, arr in arrays.items():
        if progress:
            progress(name)
        issues += _check_chunks(root, name, arr, finite=name.removeprefix("data/") in (*obs_spec.names,
                                                                                     "action", "reward"))
    if store.ENDS in arrays and store.INFO in arrays:
        issues += _check_ends(arrays[store.ENDS], arrays[store.INFO], data_lens)
    return issues


def _arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    out: dict[str, zarr.Array] = {}
    for sub in ("data", "meta"):
        if sub in group:
            out.update({f"{sub}/{n}": a for n, a in group[sub].arrays()})
    return out


def _check_shapes(arrays: dict[str, zarr.Array], obs_spec: ObservationSpec) -> list[str]:
    issues = []
    for f in obs_spec.fields:
        arr = arrays.get(f"data/{f.name}")
        if arr is not None and (tuple(arr.shape[1:]) != tuple(f.shape) or arr.dtype != np.dtype(f.dtype)):
            issues.append(f"data/{f.name} has step shape {list(arr.shape[1:])} {arr.dtype}, the spec says "
                          f"{list(f.shape)} {f.dtype}")
    act = arrays.get("data/action")
    if act is not None and act.shape[1:] != (5,):
        issues.append(f"data/action has step shape {list(act.shape[1:])}, expected [5]")
    return issues


def _check_chunks(root: Path, name: str, arr: zarr.Array, finite: bool) -> list[str]:
    issues = []
    grid = [range(-(-s // c)) for s, c in zip(arr.shape, arr.chunks, strict=True)]
    for idx in product(*grid):
        key = arr.metadata.encode_chunk_key(idx)
        if not (root / name / key).is_file():
            issues.append(f"missing chunk {name}/{key} (reads back as fill values)")
            continue
        sel = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, arr.chunks, arr.shape, strict=True))
        try:
            block = np.asarray(arr[sel])
        except Exception as exc:  # noqa: BLE001 - any decode failure is a finding, not a crash
            issues.append(f"truncated or corrupt chunk {name}/{key}: {type(exc).__name__}: {exc}")
            continue
        if finite and block.dtype.kind == "f" and not np.all(np.isfinite(block)):
            issues.append(f"NaN or inf in {name} steps {sel[0].start}..{sel[0].stop - 1}")
    return issues


def _check_ends(ends_arr: zarr.Array, info_arr: zarr.Array, data_lens: dict[str, int]) -> list[str]:
    issues = []
    try:
        ends = np.asarray(ends_arr[:], dtype=np.int64)
        infos = list(info_arr[:])
    except Exception as exc:  # noqa: BLE001
        return [f"cannot read episode index: {type(exc).__name__}: {exc}"]
    if len(ends) != len(infos):
        issues.append(f"{store.ENDS} has {len(ends)} entries but {store.INFO} has {len(infos)}")
    steps = np.diff(np.concatenate([[0], ends]))
    for i in np.flatnonzero(steps <= 0):
        issues.append(f"{store.ENDS}[{i}] = {ends[i]} is not after the previous end (episodes must have steps)")
    for i, text in enumerate(infos):
        try:
            json.loads(text)
        except (TypeError, ValueError):
            issues.append(f"{store.INFO}[{i}] is not valid JSON: {str(text)[:60]!r}")
    last = int(ends[-1]) if len(ends) else 0
    for name, n in sorted(data_lens.items()):
        if n < last:
            issues.append(f"{store.ENDS} says the episodes end at step {last} but {name} has only {n} steps")
        elif n > last:
            issues.append(f"{name} has {n - last} uncommitted steps after the last episode end {last} "
                          "(an interrupted recording; 'data validate --repair' or opening a recorder truncates)")
    return issues
