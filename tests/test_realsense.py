"""RealSense class: real recordings made with a software device, played back through the camera class."""

import math

import numpy as np
import pytest

pytest.importorskip("pyrealsense2")

from hardware.camera_config import RealSenseConfig  # noqa: E402
from hardware.realsense import EndOfRecording, RealSenseCamera, write_recording  # noqa: E402
from robot_stack.devices import CameraError  # noqa: E402
from robot_stack.perception import HeightmapProjector  # noqa: E402
from robot_stack.perception.synthetic import Box, Scene  # noqa: E402
from robot_stack.specs import CameraIntrinsics, CameraSpec, HeightmapSpec, WorkspaceBox, look_down_pose  # noqa: E402

INTRINSICS = CameraIntrinsics(150.0, 150.0, 79.5, 59.5, 160, 120, 0.001)
POSE = look_down_pose((0.5, 0.0, 0.6))
SPEC = HeightmapSpec(64, WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3))
SCENE = Scene(0.0, (Box(0.45, -0.05, 0.08, 0.06, 0.05, math.radians(20)), Box(0.58, 0.06, 0.06, 0.06, 0.1)))
STAMPS = [12.0 + i / 30 for i in range(4)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    camera = CameraSpec.create(INTRINSICS, POSE)
    base = SCENE.render_depth(camera)
    frames = [np.round(base / 0.001).astype(np.uint16) + np.uint16(i) for i in range(len(STAMPS))]
    for i, f in enumerate(frames):
        f[base == 0] = 0
        f[56:60, 76:80] = 0  # a few "no data" pixels in every frame
        frames[i] = f
    path = write_recording(tmp_path_factory.mktemp("rs") / "scene.db3", frames, INTRINSICS, STAMPS)
    return path, frames


def config_for(path, **kw) -> RealSenseConfig:
    return RealSenseConfig(recording=str(path), extrinsics=POSE.tolist(), **kw)


def test_playback_gives_every_frame_with_its_timestamp_and_intrinsics(recording):
    path, frames = recording
    with RealSenseCamera(config_for(path)) as cam:
        assert cam.is_playback
        intr = cam.spec.intrinsics
        assert (intr.width, intr.height, intr.fx, intr.cx) == (160, 120, 150.0, 79.5)
        assert intr.depth_scale == pytest.approx(0.001)
        got = [cam.read() for _ in STAMPS]
        with pytest.raises(EndOfRecording, match="after 4 frames"):
            cam.read()
    assert [f.index for f in got] == [0, 1, 2, 3]
    assert [f.timestamp for f in got] == pytest.approx(STAMPS, abs=1e-6)
    for frame, expected in zip(got, frames, strict=True):
        assert frame.depth.dtype == np.uint16
        np.testing.assert_array_equal(frame.depth, expected)


def test_played_back_frame_gives_the_expected_heightmap(recording):
    path, frames = recording
    with RealSenseCamera(config_for(path)) as cam:
        frame = cam.read()
        heights = HeightmapProjector(cam.spec, SPEC)(frame)
    expected = HeightmapProjector(CameraSpec.create(INTRINSICS, POSE), SPEC)(frames[0])
    np.testing.assert_allclose(heights, expected, atol=1e-6)
    assert heights.max() == pytest.approx(0.1, abs=0.0015)


def test_decimation_and_filters_change_the_intrinsics_consistently(recording):
    path, _ = recording
    cfg = config_for(path, decimation=2, spatial=True, temporal=True, hole_filling=1)
    with RealSenseCamera(cfg) as cam:
        frame = cam.read()
        intr = cam.spec.intrinsics
    assert frame.depth.shape == (60, 80) == (intr.height, intr.width)
    assert intr.fx == pytest.approx(75.0, rel=0.02)
    assert np.count_nonzero(frame.depth == 0) == 0  # hole filling closed the "no data" patch
    heights = HeightmapProjector(cam.spec, SPEC)(frame)
    assert heights.max() == pytest.approx(0.1, abs=0.01)


def test_missing_recording_camera_and_bad_settings_get_clear_errors(tmp_path):
    with pytest.raises(CameraError, match="not found"):
        RealSenseCamera(config_for(tmp_path / "missing.db3"))
    with pytest.raises(CameraError, match=r"\.db3 or \.bag"):
        RealSenseCamera(config_for(tmp_path / "frames.mp4"))
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"not a recording")
    with pytest.raises(CameraError, match="cannot open recording"):
        RealSenseCamera(config_for(junk))
    import pyrealsense2 as rs

    if len(rs.context().query_devices()) == 0:
        with pytest.raises(CameraError, match="no RealSense camera connected"):
            RealSenseCamera(RealSenseConfig())
    with pytest.raises(ValueError, match="decimation"):
        RealSenseConfig(decimation=0)
    with pytest.raises(CameraError, match="expected uint16"):
        write_recording(tmp_path / "x.db3", [np.zeros((120, 160), np.float32)], INTRINSICS, [0.0])
