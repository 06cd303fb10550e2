"""The calibrate job: fit the table plane in depth frames and compare it with the configured camera pose."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hardware.camera_config import RealSenseConfig
from robot_stack import config
from robot_stack.specs import WorkspaceBox


@dataclass
class CalibrateJob:
    camera: dict[str, Any] = field(default_factory=dict)  # hardware.camera_config.RealSenseConfig
    workspace: dict[str, float] = field(default_factory=dict)  # robot_stack.specs.WorkspaceBox; z_min = table
    frames: int = 5  # depth frames combined (per-pixel median) before the fit
    inlier_threshold_m: float = 0.005
    height_tolerance_m: float = 0.005
    tilt_tolerance_deg: float = 1.0
    footprint_margin_m: float = 0.05  # points this far beyond the workspace footprint still count

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise config.ConfigError(f"frames: must be at least 1, got {self.frames}")
        config.build(RealSenseConfig, self.camera, "camera")
        config.build(WorkspaceBox, self.workspace, "workspace")


@dataclass(frozen=True)
class CalibrationResult:
    table_height_m: float  # fitted table z at the workspace centre, world frame, through the configured pose
    expected_height_m: float
    tilt_deg: float  # angle between the fitted table normal and world z
    camera_height_measured_m: float  # camera's distance from the fitted plane (pose-independent)
    camera_height_configured_m: float
    inlier_fraction: float
    rms_m: float

    @property
    def height_error_m(self) -> float:
        return self.table_height_m - self.expected_height_m

    def ok(self, job: CalibrateJob) -> bool:
        return abs(self.height_error_m) <= job.height_tolerance_m and self.tilt_deg <= job.tilt_tolerance_deg


def calibrate(job: CalibrateJob) -> CalibrationResult:
    from hardware.realsense import RealSenseCamera

    cam_cfg = config.build(RealSenseConfig, job.camera, "camera")
    workspace = config.build(WorkspaceBox, job.workspace, "workspace")
    with RealSenseCamera(cam_cfg) as camera:
        depths = [camera.read().depth_m() for _ in range(job.frames)]
        spec = camera.spec
    return measure(np.stack(depths), spec, workspace, job)


def measure(depths_m: np.ndarray, spec, workspace, job: CalibrateJob) -> CalibrationResult:
    """Fit the table in [N, H, W] depth frames (metres) from the camera ``spec``."""
    from robot_stack.perception import camera_to_world, deproject, fit_table_plane

    stack = np.where(depths_m > 0, depths_m, np.nan)
    with np.errstate(all="ignore"), _quiet_nanmedian():
        depth = np.nanmedian(stack, axis=0).astype(np.float32)
    world = camera_to_world(deproject(depth, spec.intrinsics), spec).reshape(-1, 3)
    m = job.footprint_margin_m
    inside = ((world[:, 0] >= workspace.x_min - m) & (world[:, 0] <= workspace.x_max + m)
              & (world[:, 1] >= workspace.y_min - m) & (world[:, 1] <= workspace.y_max + m))
    fit = fit_table_plane(world[inside], threshold=job.inlier_threshold_m)
    cx, cy, _ = workspace.center
    origin = spec.pose[:3, 3]
    return CalibrationResult(
        table_height_m=fit.height_at(cx, cy), expected_height_m=workspace.z_min, tilt_deg=fit.tilt_deg(),
        camera_height_measured_m=fit.distance(origin), camera_height_configured_m=float(origin[2] - workspace.z_min),
        inlier_fraction=fit.inlier_fraction, rms_m=fit.rms)


class _quiet_nanmedian:
    """All-NaN pixels (no data in every frame) are expected; their warning is noise."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def print_report(result: CalibrationResult, job: CalibrateJob) -> None:
    from rich.console import Console
    from rich.table import Table

    def verdict(good: bool) -> str:
        return "[green]ok[/]" if good else "[red]off[/]"

    table = Table(title="robot-stack calibrate: table plane vs configured camera pose")
    for col in ("quantity", "measured", "expected", "tolerance", ""):
        table.add_column(col)
    height_ok = abs(result.height_error_m) <= job.height_tolerance_m
    table.add_row("table height at workspace centre (m)", f"{result.table_height_m:.4f}",
                  f"{result.expected_height_m:.4f}", f"±{job.height_tolerance_m:g}", verdict(height_ok))
    table.add_row("table tilt vs world z (deg)", f"{result.tilt_deg:.3f}", "0", f"<= {job.tilt_tolerance_deg:g}",
                  verdict(result.tilt_deg <= job.tilt_tolerance_deg))
    table.add_row("camera height above table (m)", f"{result.camera_height_measured_m:.4f}",
                  f"{result.camera_height_configured_m:.4f}", "", "")
    table.add_row("plane inliers / rms (m)", f"{result.inlier_fraction:.1%} / {result.rms_m:.4f}", "", "", "")
    console = Console()
    console.print(table)
    if result.ok(job):
        console.print("camera pose agrees with the table plane")
    else:
        console.print(f"camera pose is off: table {result.height_error_m * 1000:+.1f} mm from where the extrinsics "
                      f"put it, tilted {result.tilt_deg:.2f} deg ({math.radians(result.tilt_deg):.4f} rad)")
