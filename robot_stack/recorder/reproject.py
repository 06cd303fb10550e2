"""Re-project a store's raw depth frames into another heightmap view: how recorded data survives an observation change.

A step can be re-projected when the store kept its raw depth frame (``depth``) and the arm state its observation
was built from (``arm``, ``robot_stack.observation.arm_vector``), and its episode (or the store) names the camera
(``camera``, a ``CameraSpec`` dict) and the heightmap it was recorded with (``heightmap``). The new heightmap is
built by the same ``ObservationBuilder`` the sim env and the control loop use; every other field, the actions,
rewards and extras are copied as they are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.observation import ObservationBuilder, arm_state_from
from robot_stack.perception import HeightmapProjector
from robot_stack.recorder import store
from robot_stack.recorder.dataset import Episode, EpisodeDataset
from robot_stack.recorder.store import StoreError
from robot_stack.specs import CameraSpec, FieldSpec, HeightmapSpec, ObservationSpec

NEEDED = ("depth", "arm")


def target_heightmap(source: HeightmapSpec, view: str | None = None, size: int | None = None) -> HeightmapSpec:
    """``source`` with another view and/or size (a new view gets its default extent)."""
    view = view or source.view
    extent = source.extent if view == source.view else 0.0
    return dataclasses.replace(source, view=view, size=size or source.size, extent=extent)


def observation_for(source: ObservationSpec, heightmap: HeightmapSpec) -> ObservationSpec:
    """``source`` with its heightmap field shaped for ``heightmap``; every other field unchanged."""
    shape = (heightmap.channels, heightmap.size, heightmap.size)
    return ObservationSpec(tuple(FieldSpec(f.name, shape, f.dtype) if f.name == "heightmap" else f
                                 for f in source.fields))


def reproject(store_in: str | Path, store_out: str | Path, view: str | None = None, size: int | None = None,
              heightmap: HeightmapSpec | None = None) -> dict[str, Any]:
    """Write ``store_out``: ``store_in`` with every heightmap re-projected into ``heightmap`` (default: the
    recorded spec with ``view`` and ``size`` changed). Returns a summary (episodes, steps, the new spec)."""
    ds = EpisodeDataset(store_in, cache=False)
    _check_source(ds, Path(store_out))
    header_meta = ds.meta
    source_hm = _spec_from(HeightmapSpec, "heightmap", ds.episode_meta(int(ds.episode_ids[0])), header_meta, ds.path)
    new_hm = heightmap or target_heightmap(source_hm, view, size)
    obs_spec = observation_for(ds.obs_spec, new_hm)
    group = store.create(store_out, obs_spec, ds.action_spec, {**header_meta, "heightmap": new_hm.to_dict()},
                         ds.header.get("compressor"), int(ds.header.get("chunk_bytes", store.DEFAULT_CHUNK_BYTES)))
    header = dict(group.attrs[store.ATTR])
    end = 0
    for index in ds.episode_ids:
        meta = ds.episode_meta(int(index))
        ep = ds.episode(int(index))
        camera = _spec_from(CameraSpec, "camera", meta, header_meta, ds.path)
        builder = ObservationBuilder(obs_spec, new_hm, HeightmapProjector(camera, new_hm))
        store.append_steps(group, _episode_arrays(ep, builder), header)
        end += len(ep)
        store.commit(group, end, {**meta, "heightmap": new_hm.to_dict()} if "heightmap" in meta else meta)
    return {"episodes": len(ds), "steps": end, "heightmap": new_hm.to_dict(), "out": str(store_out)}


def _check_source(ds: EpisodeDataset, out: Path) -> None:
    missing = [k for k in NEEDED if k not in ds.keys]
    if missing:
        raise StoreError(f"{ds.path} cannot be re-projected: it has no per-step {missing} (raw depth frames and the "
                         "observed arm state); record with a recorder that keeps depth (keep_depth=True in the control "
                         "loop, record_depth with the arm state in collect)")
    if not len(ds):
        raise StoreError(f"{ds.path} has no committed episode to re-project")
    if out.exists():
        raise StoreError(f"{out} already exists; re-projection writes a new store")


def _spec_from(cls: Any, key: str, meta: dict[str, Any], header_meta: dict[str, Any], where: str) -> Any:
    data = meta.get(key) or header_meta.get(key)
    if not data:
        raise StoreError(f"{where} names no {key!r} spec (in the episode or store metadata): it cannot be "
                         "re-projected")
    return cls.from_dict(data)


def _episode_arrays(ep: Episode, builder: ObservationBuilder) -> dict[str, np.ndarray]:
    depth, arm = ep.extras["depth"], ep.extras["arm"]
    others = [n for n in builder.observation.names if n != "heightmap"]
    heightmaps = np.empty((len(ep), *builder.observation["heightmap"].shape), dtype=np.float32)
    for t in range(len(ep)):
        state = arm_state_from(arm[t])
        state.extra = {n: ep.obs[n][t] for n in others}
        heightmaps[t] = builder(np.asarray(depth[t]), state)["heightmap"]
    arrays = {"heightmap": heightmaps, **{n: ep.obs[n] for n in others}, "action": ep.action, "reward": ep.reward,
              "terminal": ep.terminal, "timestamp": ep.timestamp}
    return {**arrays, **ep.extras}
