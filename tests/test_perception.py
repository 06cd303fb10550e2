"""Depth frames to heightmaps: analytic and MuJoCo scenes, symmetry, crops, plane fit, bad input."""

import math
import os

import numpy as np
import pytest

from robot_stack.devices import DepthFrame
from robot_stack.perception import (
    HeightmapProjector,
    PerceptionError,
    camera_to_world,
    deproject,
    fit_table_plane,
    gripper_crop,
    project_plain_numpy,
)
from robot_stack.perception.synthetic import Box, Scene
from robot_stack.specs import CameraIntrinsics, CameraSpec, HeightmapSpec, SpecError, WorkspaceBox, look_down_pose
from robot_stack.symmetry import Group, act_on_image

DEPTH_SCALE = 0.001  # RealSense's 1 mm raw unit: the quantisation step of the depth frames below
WORKSPACE = WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3)
SPEC64 = HeightmapSpec(64, WORKSPACE)
SCENE = Scene(0.0, (Box(0.45, -0.05, 0.06, 0.04, 0.05, math.radians(30)), Box(0.58, 0.08, 0.05, 0.05, 0.12),
                    Box(0.52, 0.02, 0.03, 0.08, 0.02)))
BACKENDS = ["numba", "numpy"]


def top_camera(width=320, height=240, f=300.0, position=(0.5, 0.0, 0.6), yaw=0.0) -> CameraSpec:
    intr = CameraIntrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height, DEPTH_SCALE)
    return CameraSpec.create(intr, look_down_pose(position, yaw), "top")


def quantised(depth_m: np.ndarray) -> np.ndarray:
    return np.round(depth_m / DEPTH_SCALE).astype(np.uint16)


def cell_truth(scene: Scene, spec: HeightmapSpec) -> tuple[np.ndarray, np.ndarray]:
    """True height at each cell centre, and where a cell and its neighbours lie on one surface.

    A cell counts as uniform when a 9x9 grid of samples over it agrees with its centre and the same
    holds for its 8 neighbours, so a slanted box corner poking into it cannot be missed.
    """
    c, ws, n = spec.cell_size, spec.workspace, spec.size
    centres_x = ws.x_min + (np.arange(n) + 0.5) * c
    centres_y = ws.y_min + (np.arange(n) + 0.5) * c
    truth = scene.height_at(*np.meshgrid(centres_x, centres_y))
    samples = (np.arange(9) - 4) / 8 * c
    fine = scene.height_at((centres_x[None, None, :, None] + samples[None, None, None, :]),
                           (centres_y[:, None, None, None] + samples[None, :, None, None]))
    same = np.all(np.isclose(fine, truth[:, None, :, None]), axis=(1, 3))
    padded = np.pad(same, 1, constant_values=True)
    uniform = np.ones_like(same)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            uniform &= padded[dr:dr + n, dc:dc + n]
    return truth, uniform


@pytest.mark.parametrize("backend", BACKENDS)
def test_analytic_scene_heights_within_one_quantisation_step(backend):
    camera = top_camera()
    raw = quantised(SCENE.render_depth(camera))
    heights, observed = HeightmapProjector(camera, SPEC64, backend=backend).project(raw)
    truth, uniform = cell_truth(SCENE, SPEC64)
    assert heights.dtype == np.float32 and heights.shape == (64, 64)
    check = uniform & observed  # perspective: the boxes hide a sliver of table beside them
    assert check.sum() > 0.8 * uniform.size
    assert np.abs(heights - truth)[check].max() <= DEPTH_SCALE + 1e-6
    # Mixed cells hold the higher of their surfaces, never more than the tallest one.
    assert np.all(heights <= 0.12 + DEPTH_SCALE)
    assert heights[~uniform].max() > 0.1


def test_tilted_camera_observed_cells_match_and_shadows_are_empty():
    pose = look_down_pose((0.5, 0.0, 0.0), 0.3)
    tilt = np.eye(4)
    tilt[:3, :3] = _rot_x(math.radians(20))
    pose = pose @ tilt
    pose[:3, 3] = [0.5, 0.0, 0.0] - 0.7 * pose[:3, 2]  # 0.7 m back along the optical axis from the centre
    camera = CameraSpec.create(top_camera().intrinsics, pose)
    projector = HeightmapProjector(camera, SPEC64)
    heights, observed = projector.project(quantised(SCENE.render_depth(camera)))
    truth, uniform = cell_truth(SCENE, SPEC64)
    check = uniform & observed
    # A slanted ray quantised to 1 mm in depth moves up to 1 mm / cos(tilt) along the surface normal.
    assert np.abs(heights - truth)[check].max() <= DEPTH_SCALE / math.cos(math.radians(25)) + 1e-6
    assert 0 < projector.last_empty_cells == np.count_nonzero(~observed)  # the boxes cast shadows
    assert np.all(heights[~observed] == 0.0)


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_backends_and_plain_numpy_agree():
    camera = top_camera()
    depth = SCENE.render_depth(camera)
    fast = HeightmapProjector(camera, SPEC64, backend="numba")(depth)
    fallback = HeightmapProjector(camera, SPEC64, backend="numpy")(depth)
    plain = project_plain_numpy(depth, camera, SPEC64)
    # Rounding differs (float64, float32, a different order): points on a cell boundary may change cell.
    for other in (fallback, plain):
        differ = np.abs(fast - other) > 1e-5
        assert differ.mean() < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotating_the_scene_by_90_degrees_rotates_the_heightmap_exactly(backend):
    camera = top_camera(width=240, height=240, f=271.3)  # square image above the centre: a C4-symmetric camera
    projector = HeightmapProjector(camera, SPEC64, backend=backend)
    centre = WORKSPACE.center[:2]
    base = projector(quantised(SCENE.render_depth(camera)))
    group = Group.parse("C4")
    for g in group.elements[1:]:
        rotated_scene = SCENE.rotated(g.angle, centre)
        turned = projector(quantised(rotated_scene.render_depth(camera)))
        np.testing.assert_array_equal(turned, act_on_image(g, base))


def test_mujoco_render_agrees_with_analytic_truth():
    os.environ.setdefault("MUJOCO_GL", "egl")
    mujoco = pytest.importorskip("mujoco")
    boxes = "\n".join(
        f'<geom type="box" size="{b.sx / 2} {b.sy / 2} {b.height / 2}" pos="{b.x} {b.y} {b.height / 2}" '
        f'euler="0 0 {math.degrees(b.yaw)}"/>' for b in SCENE.boxes)
    xml = f"""<mujoco><visual><map znear="0.05" zfar="3"/></visual><worldbody>
      <geom type="plane" size="1 1 0.01"/>{boxes}
      <camera name="top" pos="0.5 0 0.6" xyaxes="1 0 0 0 1 0" fovy="45"/></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, 240, 320)
    try:
        renderer.enable_depth_rendering()
        renderer.update_scene(data, camera="top")
        depth = renderer.render().astype(np.float32)
    finally:
        renderer.close()
    # MuJoCo cameras look down their -z with y up; OpenCV axes flip y and z.
    pose = np.eye(4)
    pose[:3, :3] = data.cam_xmat[0].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
    pose[:3, 3] = data.cam_xpos[0]
    camera = CameraSpec.create(CameraIntrinsics.from_fovy(45, 320, 240), pose, "mujoco")
    heights, observed = HeightmapProjector(camera, SPEC64).project(depth)
    truth, uniform = cell_truth(SCENE, SPEC64)
    # MuJoCo's depth comes from a 24-bit depth buffer between znear and zfar: about 1e-4 m at 0.6 m.
    # The tolerance (docs/frames.md) is 2 mm, and the analytic render of the same camera agrees within it.
    check = uniform & observed
    assert check.sum() > 0.8 * uniform.size
    assert np.abs(heights - truth)[check].max() <= 0.002
    analytic = HeightmapProjector(camera, SPEC64)(SCENE.render_depth(camera))
    assert np.mean(np.abs(heights - analytic) > 0.002) < 0.02


def test_invalid_depth_rule_and_empty_cells():
    camera = top_camera()
    depth = SCENE.render_depth(camera)
    depth[:, : camera.intrinsics.width // 2] = np.nan  # left half NaN
    depth[: camera.intrinsics.height // 2, :] = 0.0  # top half "no data"
    depth[-10:, -10:] = 50.0  # beyond range: would land outside anyway, counted as invalid
    projector = HeightmapProjector(camera, SPEC64, max_depth=4.0, empty_value=-0.5)
    heights, observed = projector.project(depth)
    valid = np.isfinite(depth) & (depth > 0) & (depth <= 4.0)
    assert projector.last_valid_pixels == np.count_nonzero(valid)
    # Only the bottom-right quadrant of the image (world +x, -y: low rows, high cols) was seen.
    assert not observed[40:, :].any() and not observed[:, :24].any()
    assert observed[5:28, 36:60].all()
    assert np.all(heights[~observed] == -0.5)


def test_heights_are_clipped_to_the_workspace_box():
    camera = top_camera()
    scene = Scene(0.0, (Box(0.5, 0.0, 0.1, 0.1, 0.45),))  # taller than the 0.3 m box
    depth = scene.render_depth(camera)
    below = depth.copy()
    below[:] = 0.62  # a surface 2 cm under the table
    assert HeightmapProjector(camera, SPEC64)(depth).max() == pytest.approx(0.3)
    assert HeightmapProjector(camera, SPEC64)(below).min() == 0.0


def test_depth_frame_input_uses_its_depth_scale_and_centre_shift_matches_crop():
    camera = top_camera()
    raw = quantised(SCENE.render_depth(camera))
    projector = HeightmapProjector(camera, SPEC64)
    from_raw = projector(raw)
    frame = DepthFrame(raw, camera, timestamp=1.0)
    np.testing.assert_array_equal(projector(frame), from_raw)
    metres = DepthFrame(raw.astype(np.float32) * np.float32(DEPTH_SCALE),
                        CameraSpec(camera.intrinsics.__class__(**{**camera.intrinsics.to_dict(), "depth_scale": 1.0}),
                                   camera.extrinsics, "other-name"))
    assert np.abs(projector(metres) - from_raw).max() < 1e-6
    # Moving the grid by a whole number of cells equals cropping the big map there.
    shift = 6 * SPEC64.cell_size
    centre = (WORKSPACE.center[0] + shift, WORKSPACE.center[1] - shift)
    moved = projector(raw, center_xy=centre)
    crop = gripper_crop(from_raw, SPEC64, centre, 64)
    np.testing.assert_array_equal(moved[:-6, 6:][:58, :52], crop[:-6, 6:][:58, :52])
    assert np.all(crop[:6, :] == 0) and np.all(crop[:, -6:] == 0)


def test_gripper_crop_window():
    hm = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    c = SPEC64.cell_size
    centre_cell = (WORKSPACE.x_min + 20.5 * c, WORKSPACE.y_min + 10.5 * c)  # cell (row 10, col 20)
    crop = gripper_crop(hm, SPEC64, centre_cell, 5)
    np.testing.assert_array_equal(crop, hm[8:13, 18:23])
    np.testing.assert_array_equal(gripper_crop(hm[None], SPEC64, WORKSPACE.center[:2], 64)[0], hm)
    corner = gripper_crop(hm, SPEC64, (WORKSPACE.x_min, WORKSPACE.y_min), 4, fill=-1)
    assert np.all(corner[:2] == -1) and np.all(corner[:, :2] == -1) and corner[2, 2] == hm[0, 0]
    with pytest.raises(PerceptionError, match=r"\[\.\.\., 64, 64\]"):
        gripper_crop(hm[:32], SPEC64, (0.5, 0.0), 8)


def test_deproject_points_land_on_the_scene():
    camera = top_camera()
    depth = SCENE.render_depth(camera)
    depth[0, 0] = np.nan
    depth[0, 1] = 0.0
    points = deproject(depth, camera.intrinsics)
    assert points.shape == (240, 320, 3) and points.dtype == np.float32
    assert np.isnan(points[0, 0]).all() and np.isnan(points[0, 1]).all()
    world = camera_to_world(points, camera)
    ok = np.isfinite(world[..., 2])
    heights = SCENE.height_at(world[..., 0][ok], world[..., 1][ok])
    tops = np.isclose(world[..., 2][ok], heights, atol=1e-5)
    assert tops.mean() > 0.97  # the rest are box sides, seen at a slant


def test_fit_table_plane_recovers_a_tilted_table_among_boxes():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-0.2, 0.2, size=(5000, 2))
    normal = np.array([math.sin(math.radians(3)), 0.0, math.cos(math.radians(3))])
    z = (0.1 - normal[0] * xy[:, 0]) / normal[2] + rng.normal(0, 0.0005, len(xy))
    table = np.column_stack([xy, z])
    box = np.column_stack([rng.uniform(0, 0.05, (800, 2)), np.full(800, 0.2)])
    fit = fit_table_plane(np.vstack([table, box, [[np.nan] * 3]]))
    assert fit.tilt_deg() == pytest.approx(3.0, abs=0.05)
    assert fit.height_at(0.0, 0.0) == pytest.approx(0.1, abs=0.001)
    assert fit.inliers >= 4900 and fit.rms < 0.001
    with pytest.raises(PerceptionError, match="at least 3"):
        fit_table_plane(np.full((10, 3), np.nan))


@pytest.mark.parametrize(
    "make_depth, message",
    [
        (lambda: np.zeros((240, 320, 1), np.float32), r"2-D \[H, W\].*\[240, 320, 1\]"),
        (lambda: np.zeros((240, 320), np.int32), "dtype.*int32"),
        (lambda: np.zeros((480, 640), np.float32), "640x480.*320x240"),
        (lambda: np.zeros((240, 320), np.float32), "no valid pixel"),
        (lambda: np.full((240, 320), np.nan, np.float32), "no valid pixel"),
        (lambda: [[0.5]], "numpy array"),
    ],
)
def test_bad_frames_get_clear_errors(make_depth, message):
    projector = HeightmapProjector(top_camera(), SPEC64)
    with pytest.raises(PerceptionError, match=message):
        projector(make_depth())


def test_bad_setup_gets_clear_errors():
    camera = top_camera()
    other = CameraSpec.create(camera.intrinsics, look_down_pose((0.5, 0.0, 0.7)))
    projector = HeightmapProjector(camera, SPEC64)
    with pytest.raises(PerceptionError, match="does not match.*extrinsics"):
        projector(DepthFrame(np.zeros((240, 320), np.uint16), other))
    with pytest.raises(SpecError, match="no volume: z_max=0.0 <= z_min=0.0"):
        WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.0)
    with pytest.raises(PerceptionError, match="max_depth"):
        HeightmapProjector(camera, SPEC64, min_depth=2.0, max_depth=1.0)
    with pytest.raises(PerceptionError, match="backend"):
        HeightmapProjector(camera, SPEC64, backend="cuda")
    with pytest.raises(PerceptionError, match="center_xy"):
        projector(np.full((240, 320), 0.6, np.float32), center_xy=(np.nan, 0.0))
    with pytest.raises(PerceptionError, match="metres"):
        deproject(np.zeros((240, 320), np.uint16), camera.intrinsics)
