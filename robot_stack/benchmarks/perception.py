"""robot-stack bench perception: 640x480 depth frame -> 128x128 and 64x64 heightmaps.

Figures: p50/p99 of the compiled projector (numba), of the pure-numpy fallback and of the plain
numpy version (deproject, 4x4 transform, ``np.maximum.at``), all on the same analytic scene in the
same run; the ratio is plain p50 / compiled p50. Options: ``repeats=N``.
"""

from __future__ import annotations

import math

import numpy as np

from robot_stack.benchmarks import BenchReport, percentiles_ms, positive_option, time_calls

TARGET_P50_MS = 1.0
TARGET_RATIO = 5.0


def run(quick: bool, options: list[str]) -> BenchReport:
    from rich.progress import track

    from robot_stack.perception import HeightmapProjector, project_plain_numpy
    from robot_stack.perception.synthetic import Box, Scene
    from robot_stack.specs import CameraIntrinsics, CameraSpec, HeightmapSpec, WorkspaceBox, look_down_pose

    repeats = int(positive_option(options, "perception", "repeats", 200 if quick else 2000, int))
    camera = CameraSpec.create(CameraIntrinsics(615.0, 615.0, 319.5, 239.5, 640, 480, 0.001),
                               look_down_pose((0.5, 0.0, 0.6)), "bench")
    scene = Scene(0.0, (Box(0.45, -0.05, 0.06, 0.04, 0.05, math.radians(30)), Box(0.58, 0.08, 0.05, 0.05, 0.12)))
    depth_m = scene.render_depth(camera)
    raw = np.round(depth_m / 0.001).astype(np.uint16)
    report = BenchReport("perception")
    report.notes.append(f"640x480 analytic scene, camera 0.6 m above a 0.3 m workspace, {repeats} timed calls; "
                        "'compiled' = numba kernel on uint16 frames, 'numpy' = the pure-numpy fallback, "
                        "'plain' = deproject + 4x4 transform + np.maximum.at on float metres")
    for size in track((128, 64), description="perception bench"):
        spec = HeightmapSpec(size, WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3))
        fast = HeightmapProjector(camera, spec, backend="numba")
        fallback = HeightmapProjector(camera, spec, backend="numpy")
        fast_ms = percentiles_ms(time_calls(lambda f=fast: f(raw), repeats))
        numpy_ms = percentiles_ms(time_calls(lambda f=fallback: f(raw), max(repeats // 10, 20)))
        plain_ms = percentiles_ms(time_calls(lambda s=spec: project_plain_numpy(depth_m, camera, s),
                                             max(repeats // 10, 20)))
        tag = f"640x480->{size}"
        report.add(f"{tag} p50", fast_ms[0], "ms")
        report.add(f"{tag} p99", fast_ms[1], "ms")
        report.add(f"{tag} numpy fallback p50", numpy_ms[0], "ms")
        report.add(f"{tag} plain numpy p50", plain_ms[0], "ms")
        report.add(f"{tag} plain numpy p99", plain_ms[1], "ms")
        report.add(f"{tag} speed-up vs plain numpy", plain_ms[0] / fast_ms[0], "x")
        report.target(f"{tag} p50", "<=", TARGET_P50_MS)
        report.target(f"{tag} speed-up vs plain numpy", ">=", TARGET_RATIO)
    return report
