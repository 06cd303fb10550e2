"""Depth frames to camera-frame points and to orthographic top-down heightmaps.

Rules (docs/frames.md):

* **Invalid depth**: a pixel is ignored when its depth in metres is not finite, ``<= min_depth`` (0 is
  the RealSense "no data" value) or ``> max_depth`` (beyond the sensor's range).
* **Cells**: cell ``(row, col)`` covers world ``x`` in ``[x0 + col*c, x0 + (col+1)*c)`` and ``y`` in
  ``[y0 + row*c, y0 + (row+1)*c)`` (``c`` the cell size, ``(x0, y0)`` the heightmap's lower corner); it
  holds the highest point that falls in it, as metres above ``workspace.z_min`` clipped to
  ``[0, max_height]`` (points above the box count as ``max_height``, points below the table as 0).
* **Empty cells** (no valid point fell in them: outside the view, occluded, invalid depth) hold
  ``empty_value``, 0 by default (the table).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from robot_stack.devices import DepthFrame
from robot_stack.perception import _kernels
from robot_stack.specs import CameraIntrinsics, CameraSpec, HeightmapSpec, SpecError, mismatches

DEPTH_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint16))


class PerceptionError(SpecError):
    """A depth frame or camera model that cannot be turned into a heightmap; the message says why."""


def check_depth(depth: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Refuse anything but a [height, width] float metres or uint16 raw-units image matching ``intrinsics``."""
    if not isinstance(depth, np.ndarray):
        raise PerceptionError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.ndim != 2:
        raise PerceptionError(f"depth must be a 2-D [H, W] image, got shape {list(depth.shape)}")
    if depth.dtype not in DEPTH_DTYPES:
        raise PerceptionError(f"depth dtype must be float32/float64 metres or uint16 raw units, got {depth.dtype}")
    expected = (intrinsics.height, intrinsics.width)
    if depth.shape != expected:
        raise PerceptionError(f"depth frame is {depth.shape[1]}x{depth.shape[0]} (WxH) but the camera "
                              f"intrinsics say {intrinsics.width}x{intrinsics.height}")
    return depth


def pixel_rays(intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates: ``a[u] = (u - cx) / fx`` and ``b[v] = (v - cy) / fy``."""
    a = (np.arange(intrinsics.width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    b = (np.arange(intrinsics.height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    return a, b


def deproject(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """float [H, W] metres -> float32 [H, W, 3] camera-frame points (OpenCV axes); invalid depth gives NaN."""
    depth = check_depth(depth_m, intrinsics)
    if depth.dtype == np.uint16:
        raise PerceptionError("deproject takes depth in metres (float); multiply raw units by depth_scale first")
    a, b = pixel_rays(intrinsics)
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    points = np.empty(depth.shape + (3,), dtype=np.float32)
    points[..., 0] = z * a[None, :].astype(np.float32)
    points[..., 1] = z * b[:, None].astype(np.float32)
    points[..., 2] = z
    return points


def camera_to_world(points: np.ndarray, camera: CameraSpec) -> np.ndarray:
    """Camera-frame points [..., 3] -> world-frame points [..., 3] through the camera-to-world pose."""
    pose = camera.pose
    return (np.asarray(points, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)


@dataclass(frozen=True)
class _Rays:
    col: np.ndarray  # [W, 3] world-frame ray part from the column: R[:, 0] * a[u]
    row: np.ndarray  # [H, 3] world-frame ray part from the row: R[:, 1] * b[v] + R[:, 2]


class HeightmapProjector:
    """Turns depth frames from one camera into top-down heightmaps over one workspace.

    ``__call__(frame)`` takes a ``DepthFrame`` (raw uint16 or float metres, scaled by the frame's
    ``depth_scale``) or a bare float [H, W] array in metres (a bare uint16 array is scaled by the
    camera's ``depth_scale``) and returns float32 [S, S] heights above ``workspace.z_min``.
    ``center_xy`` moves the grid (same size and resolution) to be centred on a point, e.g. the gripper.
    ``backend`` is "numba" (compiled, the default when numba is installed) or "numpy".
    """

    def __init__(self, camera: CameraSpec, heightmap: HeightmapSpec, *, min_depth: float = 0.0,
                 max_depth: float = 10.0, empty_value: float = 0.0, backend: str | None = None) -> None:
        if not isinstance(camera, CameraSpec):
            raise PerceptionError(f"camera must be a CameraSpec, got {type(camera).__name__}")
        if not isinstance(heightmap, HeightmapSpec):
            raise PerceptionError(f"heightmap must be a HeightmapSpec, got {type(heightmap).__name__}")
        if not (0.0 <= min_depth < max_depth) or not np.isfinite(max_depth):
            raise PerceptionError(f"need 0 <= min_depth < max_depth < inf, got min_depth={min_depth}, "
                                  f"max_depth={max_depth}")
        self.camera = camera
        self.heightmap = heightmap
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.empty_value = np.float32(empty_value)
        self.backend = _pick_backend(backend)
        self._rays = _world_rays(camera)
        self._scaled: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._kernel = _kernels.project_numba if self.backend == "numba" else _kernels.project_numpy
        self.last_valid_pixels = 0
        self.last_empty_cells = 0

    @property
    def size(self) -> int:
        return self.heightmap.size

    def __call__(self, frame: DepthFrame | np.ndarray, center_xy: tuple[float, float] | None = None) -> np.ndarray:
        heights, _ = self.project(frame, center_xy)
        return heights

    def project(self, frame: DepthFrame | np.ndarray,
                center_xy: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(heights float32 [S, S], observed bool [S, S]): ``observed`` is False for empty cells."""
        depth, scale = self._depth_and_scale(frame)
        col_ray, row_ray = self._scaled_rays(scale)
        out = np.empty((self.size, self.size), dtype=np.float32)
        n_valid = self._kernel(depth, col_ray, row_ray, self._offset(center_xy), self.size,
                               np.float32(self.heightmap.max_height), self.min_depth / scale, self.max_depth / scale,
                               out)
        if n_valid == 0:
            raise PerceptionError(f"depth frame has no valid pixel (all 0, NaN, <= {self.min_depth} m or "
                                  f"> {self.max_depth} m)")
        observed = out >= 0
        heights = np.where(observed, out, self.empty_value)
        self.last_valid_pixels = int(n_valid)
        self.last_empty_cells = int(observed.size - np.count_nonzero(observed))
        return heights, observed

    def _depth_and_scale(self, frame: DepthFrame | np.ndarray) -> tuple[np.ndarray, float]:
        if isinstance(frame, DepthFrame):
            # The frame's own depth_scale applies (raw or metres); the geometry must be the projector's.
            same_intrinsics = replace(frame.spec.intrinsics, depth_scale=1.0) == replace(
                self.camera.intrinsics, depth_scale=1.0)
            if not same_intrinsics or frame.spec.extrinsics != self.camera.extrinsics:
                diff = [m for m in mismatches(self.camera, frame.spec)
                        if not m.startswith(("name", "intrinsics.depth_scale"))]
                raise PerceptionError(f"frame from camera {frame.spec.name!r} does not match the projector's camera "
                                      f"{self.camera.name!r}: {'; '.join(diff) or 'different spec'}")
            depth, scale = frame.depth, frame.spec.intrinsics.depth_scale
        else:
            depth = frame
            scale = self.camera.intrinsics.depth_scale if getattr(frame, "dtype", None) == np.uint16 else 1.0
        depth = check_depth(depth, self.camera.intrinsics)
        if not depth.flags.c_contiguous:
            depth = np.ascontiguousarray(depth)
        return depth, float(scale)

    def _scaled_rays(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Rays times the depth scale, x and y also divided by the cell size (cached per scale)."""
        cached = self._scaled.get(scale)
        if cached is None:
            per_axis = np.array([scale / self.heightmap.cell_size, scale / self.heightmap.cell_size, scale])
            cached = (np.ascontiguousarray(self._rays.col * per_axis, dtype=np.float32),
                      np.ascontiguousarray(self._rays.row * per_axis, dtype=np.float32))
            self._scaled[scale] = cached
        return cached

    def _offset(self, center_xy: tuple[float, float] | None) -> np.ndarray:
        ws = self.heightmap.workspace
        if center_xy is None:
            cx, cy = (ws.x_min + ws.x_max) / 2, (ws.y_min + ws.y_max) / 2
        else:
            cx, cy = (float(v) for v in center_xy)
            if not (np.isfinite(cx) and np.isfinite(cy)):
                raise PerceptionError(f"center_xy must be finite, got {center_xy}")
        t = self.camera.pose[:3, 3]
        half, inv_cell = self.size / 2.0, 1.0 / self.heightmap.cell_size
        return np.array([(t[0] - cx) * inv_cell + half, (t[1] - cy) * inv_cell + half, t[2] - ws.z_min],
                        dtype=np.float32)


def _pick_backend(backend: str | None) -> str:
    if backend is None:
        return "numba" if _kernels.project_numba is not None else "numpy"
    if backend not in ("numba", "numpy"):
        raise PerceptionError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    if backend == "numba" and _kernels.project_numba is None:
        raise PerceptionError("backend 'numba' requested but numba is not installed (pip install numba)")
    return backend


def _world_rays(camera: CameraSpec) -> _Rays:
    a, b = pixel_rays(camera.intrinsics)
    rot = camera.pose[:3, :3]
    col = np.ascontiguousarray(a[:, None] * rot[:, 0][None, :])
    row = np.ascontiguousarray(b[:, None] * rot[:, 1][None, :] + rot[:, 2][None, :])
    return _Rays(col, row)


def project_plain_numpy(depth_m: np.ndarray, camera: CameraSpec, heightmap: HeightmapSpec,
                        max_depth: float = 10.0) -> np.ndarray:
    """The straightforward version (deproject, 4x4 transform, bin, ``np.maximum.at``): the bench's baseline."""
    points = deproject(depth_m, camera.intrinsics).reshape(-1, 3).astype(np.float64)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    world = (homogeneous @ camera.pose.T)[:, :3]
    ws = heightmap.workspace
    keep = np.isfinite(world[:, 2]) & (points[:, 2] <= max_depth)
    col = np.floor((world[:, 0] - ws.x_min) / heightmap.cell_size)
    row = np.floor((world[:, 1] - ws.y_min) / heightmap.cell_size)
    keep &= (col >= 0) & (col < heightmap.size) & (row >= 0) & (row < heightmap.size)
    heights = np.clip(world[keep, 2] - ws.z_min, 0.0, heightmap.max_height)
    out = np.zeros(heightmap.size * heightmap.size)
    np.maximum.at(out, row[keep].astype(int) * heightmap.size + col[keep].astype(int), heights)
    return out.reshape(heightmap.size, heightmap.size).astype(np.float32)
