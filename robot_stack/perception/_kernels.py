"""The inner loop of depth-to-heightmap projection: a numba kernel and a pure-numpy fallback.

Both take the same precomputed float32 rays, already multiplied by the frame's depth scale and (for
x, y) divided by the cell size, so a raw depth value ``d`` maps straight to continuous cell coordinates:
``col = offset[0] + d * (row_ray[v, 0] + col_ray[u, 0])`` (likewise row, and height in metres above the
table from index 2). The grid is centred on the workspace (or the gripper), so a camera above the
centre maps pixels that are mirror images of each other to cells that are mirror images, bit for bit.

Depth ``d`` is valid when ``lo < d <= hi`` (raw units); NaN fails both comparisons. A cell starts at
-1 ("nothing seen"); the caller turns that into the empty-cell value.
"""

from __future__ import annotations

import numpy as np

try:  # numba is optional: the robot extra installs it, a bare core install falls back to numpy
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

EMPTY = np.float32(-1.0)


def project_numpy(depth: np.ndarray, col_ray: np.ndarray, row_ray: np.ndarray, offset: np.ndarray, size: int,
                  max_height: np.float32, lo: float, hi: float, out: np.ndarray) -> int:
    """Vectorised numpy version of ``project_numba``; fills ``out`` and returns the count of valid pixels."""
    d = depth.astype(np.float32, copy=False)
    valid = (d > lo) & (d <= hi)
    n_valid = int(np.count_nonzero(valid))
    d = np.where(valid, d, np.float32(0.0))
    fcol = offset[0] + d * (row_ray[:, None, 0] + col_ray[None, :, 0])
    frow = offset[1] + d * (row_ray[:, None, 1] + col_ray[None, :, 1])
    keep = valid & (fcol >= 0) & (fcol < size) & (frow >= 0) & (frow < size)
    flat = frow[keep].astype(np.int32) * size + fcol[keep].astype(np.int32)
    z = offset[2] + d[keep] * (row_ray[:, None, 2] + col_ray[None, :, 2])[keep]
    out.fill(EMPTY)
    np.maximum.at(out.reshape(-1), flat, np.clip(z, np.float32(0.0), max_height))
    return n_valid


def _project_loop(depth, col_ray, row_ray, offset, size, max_height, lo, hi,
                  out):  # pragma: no cover - compiled by numba; coverage cannot see inside
    out[:, :] = -1.0
    n_valid = 0
    height, width = depth.shape
    fsize = np.float32(size)
    zero = np.float32(0.0)
    for v in range(height):
        rx = row_ray[v, 0]
        ry = row_ray[v, 1]
        rz = row_ray[v, 2]
        for u in range(width):
            raw = depth[v, u]
            if not (raw > lo and raw <= hi):
                continue
            n_valid += 1
            d = np.float32(raw)
            fcol = offset[0] + d * (rx + col_ray[u, 0])
            if fcol < zero or fcol >= fsize:
                continue
            frow = offset[1] + d * (ry + col_ray[u, 1])
            if frow < zero or frow >= fsize:
                continue
            h = min(max(offset[2] + d * (rz + col_ray[u, 2]), zero), max_height)
            r = int(frow)
            c = int(fcol)
            if h > out[r, c]:
                out[r, c] = h
    return n_valid


# Only fused multiply-add is allowed: full fastmath would let LLVM assume no NaN and drop the NaN test.
project_numba = (numba.njit(cache=True, nogil=True, fastmath={"contract"})(_project_loop)
                 if numba is not None else None)
