"""Analytic depth rendering of a table with boxes: ground truth for tests, the bench and the docs.

Every pixel ray is intersected exactly with the table plane and with each box (slab method in the box's
frame), so the depth is the true z-depth of the nearest surface; ``height_at`` gives the true height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_stack.perception.projection import pixel_rays
from robot_stack.specs import CameraSpec


@dataclass(frozen=True)
class Box:
    """A box standing on the table: centre (x, y) in the world, size (sx, sy, height), yaw about z."""

    x: float
    y: float
    sx: float
    sy: float
    height: float
    yaw: float = 0.0

    def rotated(self, angle: float, about: tuple[float, float]) -> Box:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = self.x - about[0], self.y - about[1]
        return Box(about[0] + c * dx - s * dy, about[1] + s * dx + c * dy, self.sx, self.sy, self.height,
                   self.yaw + angle)

    def covers(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dy = x - self.x, y - self.y
        local_x, local_y = c * dx + s * dy, -s * dx + c * dy
        return (np.abs(local_x) <= self.sx / 2) & (np.abs(local_y) <= self.sy / 2)


@dataclass(frozen=True)
class Scene:
    """An infinite table plane at ``table_z`` and boxes on it."""

    table_z: float = 0.0
    boxes: tuple[Box, ...] = ()

    def rotated(self, angle: float, about: tuple[float, float]) -> Scene:
        return Scene(self.table_z, tuple(b.rotated(angle, about) for b in self.boxes))

    def height_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True surface height above the table at world (x, y)."""
        out = np.zeros(np.broadcast(x, y).shape)
        for box in self.boxes:
            out = np.where(box.covers(x, y), np.maximum(out, box.height), out)
        return out

    def render_depth(self, camera: CameraSpec) -> np.ndarray:
        """float32 [H, W] z-depth in metres; rays that hit nothing get 0 (no data)."""
        a, b = pixel_rays(camera.intrinsics)
        cam_dirs = np.stack(np.broadcast_arrays(a[None, :], b[:, None], np.ones((1, 1))), axis=-1)
        pose = camera.pose
        dirs = cam_dirs @ pose[:3, :3].T  # world direction per unit of z-depth
        origin = pose[:3, 3]
        depth = np.full(dirs.shape[:2], np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_table = (self.table_z - origin[2]) / dirs[..., 2]
        depth = np.where(t_table > 0, t_table, depth)
        for box in self.boxes:
            depth = np.minimum(depth, _hit_box(box, self.table_z, origin, dirs))
        depth[~np.isfinite(depth)] = 0.0
        return depth.astype(np.float32)


def _hit_box(box: Box, table_z: float, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    to_local = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    o = to_local @ (origin - np.array([box.x, box.y, table_z + box.height / 2]))
    d = dirs @ to_local.T
    half = np.array([box.sx, box.sy, box.height]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    hit = (t_near <= t_far) & (t_far > 0)
    return np.where(hit, np.maximum(t_near, 0.0), np.inf)
