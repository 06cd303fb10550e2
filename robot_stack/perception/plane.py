"""Fitting the table plane in a depth frame: the calibration check's measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_stack.perception.projection import PerceptionError


@dataclass(frozen=True)
class PlaneFit:
    """Plane ``normal . p = offset`` (unit normal), in the frame of the points it was fitted to."""

    normal: np.ndarray
    offset: float
    inliers: int
    points: int
    rms: float

    @property
    def inlier_fraction(self) -> float:
        return self.inliers / max(self.points, 1)

    def tilt_deg(self, axis: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> float:
        """Angle between the plane normal and ``axis`` (sign of the normal ignored)."""
        unit = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
        cos = abs(float(self.normal @ unit))
        return math.degrees(math.acos(min(cos, 1.0)))

    def distance(self, point: np.ndarray) -> float:
        """Unsigned distance of ``point`` from the plane."""
        return abs(float(self.normal @ np.asarray(point, dtype=np.float64)) - self.offset)

    def height_at(self, x: float, y: float) -> float:
        """z of the plane above world point (x, y); the plane must not be vertical."""
        nx, ny, nz = self.normal
        if abs(nz) < 1e-9:
            raise PerceptionError("the fitted plane is vertical; it has no height at a point")
        return float((self.offset - nx * x - ny * y) / nz)


def _least_squares_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    normal = vt[-1]
    if normal[2] < 0:  # a consistent orientation: +z side (world up, or towards a down-looking camera's -z)
        normal = -normal
    return normal, float(normal @ centroid)


def fit_table_plane(points: np.ndarray, threshold: float = 0.005, iterations: int = 200,
                    seed: int = 0, max_points: int = 20000) -> PlaneFit:
    """RANSAC for the dominant plane in ``points`` [..., 3] (NaN rows ignored), refined by least squares.

    ``threshold`` is the inlier distance in metres. Objects on the table are outliers; the table must be
    the largest plane in view.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 3:
        raise PerceptionError(f"need at least 3 valid points to fit the table plane, got {len(pts)}")
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    best_mask, best_count = None, -1
    samples = rng.integers(0, len(pts), size=(iterations, 3))
    for idx in samples:
        p0, p1, p2 = pts[idx]
        normal = np.cross(p1 - p0, p2 - p0)
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            continue
        normal /= norm
        mask = np.abs((pts - p0) @ normal) < threshold
        count = int(mask.sum())
        if count > best_count:
            best_mask, best_count = mask, count
    if best_mask is None or best_count < 3:
        raise PerceptionError("no plane found: the points are degenerate (all on a line?)")
    normal, offset = _least_squares_plane(pts[best_mask])
    mask = np.abs(pts @ normal - offset) < threshold
    normal, offset = _least_squares_plane(pts[mask])
    residual = pts[mask] @ normal - offset
    return PlaneFit(normal, offset, int(mask.sum()), len(pts), float(np.sqrt(np.mean(residual ** 2))))
