"""robot-stack calibrate on recordings whose true camera pose differs from the configured one (or not)."""

import math
import re

import numpy as np
import pytest

pytest.importorskip("pyrealsense2")

from hardware.realsense import write_recording  # noqa: E402
from robot_stack.cli import main  # noqa: E402
from robot_stack.perception.synthetic import Box, Scene  # noqa: E402
from robot_stack.specs import CameraIntrinsics, CameraSpec, look_down_pose  # noqa: E402

INTRINSICS = CameraIntrinsics(150.0, 150.0, 79.5, 59.5, 160, 120, 0.001)
SCENE = Scene(0.0, (Box(0.5, 0.05, 0.08, 0.06, 0.07),))


def record(path, pose: np.ndarray):
    depth = SCENE.render_depth(CameraSpec.create(INTRINSICS, pose))
    frames = [np.round(depth / 0.001).astype(np.uint16) for _ in range(2)]
    return write_recording(path, frames, INTRINSICS, [0.0, 1 / 30])


def run_calibrate(path, capsys) -> tuple[int, str]:
    code = main(["calibrate", "calibrate", f"camera.recording={path}", "frames=2"])
    return code, capsys.readouterr().out


def test_a_correct_pose_passes(tmp_path, capsys):
    code, out = run_calibrate(record(tmp_path / "good.db3", look_down_pose((0.5, 0.0, 0.6))), capsys)
    assert code == 0, out
    assert "agrees" in out


def test_a_tilted_lower_camera_is_reported_with_its_error(tmp_path, capsys):
    true_pose = look_down_pose((0.5, 0.0, 0.58))  # 2 cm lower than configured ...
    c, s = math.cos(math.radians(3)), math.sin(math.radians(3))
    true_pose[:3, :3] = true_pose[:3, :3] @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # ... and pitched 3 deg
    code, out = run_calibrate(record(tmp_path / "off.db3", true_pose), capsys)
    assert code == 1
    assert "camera pose is off" in out
    tilt = float(re.search(r"tilted\s+([\d.]+)\s+deg", out).group(1))
    assert tilt == pytest.approx(3.0, abs=0.1)
    mm = float(re.search(r"table\s+([+-][\d.]+)\s+mm", out).group(1))
    assert mm == pytest.approx(20.0, abs=3.0)  # the table appears 2 cm higher than the extrinsics expect


def test_bad_config_and_missing_file_get_clear_errors(tmp_path, capsys):
    assert main(["calibrate", "calibrate", "camera.bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["calibrate", "calibrate", f"camera.recording={tmp_path / 'none.db3'}"]) == 2
    assert "none.db3' not found" in capsys.readouterr().err
