"""Gripper-centred crops of a heightmap."""

from __future__ import annotations

import numpy as np

from robot_stack.perception.projection import PerceptionError
from robot_stack.specs import HeightmapSpec


def world_to_cell(spec: HeightmapSpec, xy: tuple[float, float]) -> tuple[float, float]:
    """Continuous (row, col) of a world point; integer values are cell centres."""
    ws = spec.workspace
    col = (float(xy[0]) - ws.x_min) / spec.cell_size - 0.5
    row = (float(xy[1]) - ws.y_min) / spec.cell_size - 0.5
    return row, col


def gripper_crop(hm: np.ndarray, spec: HeightmapSpec, center_xy: tuple[float, float], size: int,
                 fill: float = 0.0) -> np.ndarray:
    """A [..., size, size] window of ``hm`` centred (to the nearest cell) on world point ``center_xy``.

    Cells beyond the heightmap get ``fill``. For an exact, unrounded centre project a fresh map with
    ``HeightmapProjector(..., center_xy=...)`` instead.
    """
    hm = np.asarray(hm)
    if hm.ndim < 2 or hm.shape[-2:] != (spec.size, spec.size):
        raise PerceptionError(f"heightmap must be [..., {spec.size}, {spec.size}] for this spec, got {list(hm.shape)}")
    if not isinstance(size, int) or size < 1:
        raise PerceptionError(f"crop size must be a positive integer, got {size!r}")
    if not np.all(np.isfinite(center_xy)):
        raise PerceptionError(f"crop centre must be finite, got {center_xy}")
    row, col = world_to_cell(spec, center_xy)
    top = int(np.rint(row - (size - 1) / 2))
    left = int(np.rint(col - (size - 1) / 2))
    out = np.full(hm.shape[:-2] + (size, size), fill, dtype=hm.dtype)
    src_r = slice(max(top, 0), min(top + size, spec.size))
    src_c = slice(max(left, 0), min(left + size, spec.size))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        dst_r = slice(src_r.start - top, src_r.stop - top)
        dst_c = slice(src_c.start - left, src_c.stop - left)
        out[..., dst_r, dst_c] = hm[..., src_r, src_c]
    return out
