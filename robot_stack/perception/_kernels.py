"""The inner loop of depth-to-heightmap projection: a numba kernel and a pure-numpy fallback.

Both take the same precomputed rays and return the same heightmap. Coordinates are relative to the
heightmap centre (x, y) and the table (z), so a camera above the workspace centre maps pixels that are
mirror images of each other to cells that are mirror images of each other, bit for bit.

A cell starts at -1 ("nothing seen"); the caller turns that into the empty-cell value.
"""

from __future__ import annotations

import numpy as np

try:  # numba is optional: the robot extra installs it, a bare core install falls back to numpy
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

EMPTY = np.float32(-1.0)


def project_numpy(depth: np.ndarray, scale: float, col_ray: np.ndarray, row_ray: np.ndarray,
                  offset: np.ndarray, inv_cell: float, size: int, max_height: float, min_depth: float,
                  max_depth: float, out: np.ndarray) -> int:
    """Vectorised numpy version of ``project_numba``; fills ``out`` and returns the count of valid pixels."""
    d = depth.astype(np.float32) * np.float32(scale)
    valid = (d > min_depth) & (d <= max_depth)  # NaN compares false, so NaN is invalid too
    n_valid = int(np.count_nonzero(valid))
    d = np.where(valid, d, np.float32(0.0))
    half = np.float32(size / 2.0)
    ray32 = row_ray.astype(np.float32), col_ray.astype(np.float32)
    fcol = (np.float32(offset[0]) + d * (ray32[0][:, None, 0] + ray32[1][None, :, 0])) * np.float32(inv_cell) + half
    frow = (np.float32(offset[1]) + d * (ray32[0][:, None, 1] + ray32[1][None, :, 1])) * np.float32(inv_cell) + half
    keep = valid & (fcol >= 0) & (fcol < size) & (frow >= 0) & (frow < size)
    flat = frow[keep].astype(np.int32) * size + fcol[keep].astype(np.int32)
    z = np.float32(offset[2]) + d[keep] * (ray32[0][:, None, 2] + ray32[1][None, :, 2])[keep]
    out.fill(EMPTY)
    np.maximum.at(out.reshape(-1), flat, np.clip(z, 0.0, max_height).astype(np.float32))
    return n_valid


def _project_loop(depth, scale, col_ray, row_ray, offset, inv_cell, size, max_height, min_depth, max_depth,
                  out):  # pragma: no cover - compiled by numba; coverage cannot see inside
    out[:, :] = -1.0
    half = size / 2.0
    n_valid = 0
    height, width = depth.shape
    for v in range(height):
        rx = row_ray[v, 0]
        ry = row_ray[v, 1]
        rz = row_ray[v, 2]
        for u in range(width):
            d = depth[v, u] * scale
            if not (d > min_depth and d <= max_depth):
                continue
            n_valid += 1
            fcol = (offset[0] + d * (rx + col_ray[u, 0])) * inv_cell + half
            if fcol < 0.0 or fcol >= size:
                continue
            frow = (offset[1] + d * (ry + col_ray[u, 1])) * inv_cell + half
            if frow < 0.0 or frow >= size:
                continue
            h = offset[2] + d * (rz + col_ray[u, 2])
            if h < 0.0:
                h = 0.0
            elif h > max_height:
                h = max_height
            r = int(frow)
            c = int(fcol)
            if h > out[r, c]:
                out[r, c] = h
    return n_valid


project_numba = numba.njit(cache=True, nogil=True)(_project_loop) if numba is not None else None
