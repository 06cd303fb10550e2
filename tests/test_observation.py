"""The observation path shared by sim and real: gripper-centred view, gripper drawing, symmetry contract, spec."""

import math

import numpy as np
import pytest

from robot_stack.devices import ArmState
from robot_stack.observation import (
    ObservationBuilder,
    arm_state_from,
    arm_vector,
    cell_offsets,
    finger_mask,
    heightmap_image,
    heights_above_table,
)
from robot_stack.perception import HeightmapProjector
from robot_stack.perception.synthetic import Box, Scene
from robot_stack.specs import (
    SPEC_VERSION,
    CameraIntrinsics,
    CameraSpec,
    HeightmapSpec,
    ObservationSpec,
    SpecError,
    WorkspaceBox,
    check_spec_version,
    look_down_pose,
)
from robot_stack.symmetry import Group, act_on_image

WORKSPACE = WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3)
GRIPPER_VIEW = HeightmapSpec(64, WORKSPACE, view="gripper")
QUARTER = Group.parse("C4").elements[1]  # +90 degrees about z
EE = (0.47, -0.03, 0.12)


def camera_above(xy, size=480, f=400.0, height=0.6) -> CameraSpec:
    """A square camera straight above ``xy``: its pixel grid maps onto itself under 90-degree turns."""
    intr = CameraIntrinsics(f, f, (size - 1) / 2, (size - 1) / 2, size, size, 1.0)
    return CameraSpec.create(intr, look_down_pose((xy[0], xy[1], height)), "top")


def scene_about_ee(angle: float = 0.0) -> Scene:
    boxes = (Box(EE[0] + 0.08, EE[1] + 0.02, 0.04, 0.04, 0.05, 0.3), Box(EE[0] - 0.05, EE[1] - 0.09, 0.06, 0.03, 0.02),
             Box(EE[0] + 0.01, EE[1] + 0.12, 0.03, 0.03, 0.08))
    return Scene(0.0, boxes).rotated(angle, EE[:2])


def build(spec: HeightmapSpec, camera: CameraSpec) -> ObservationBuilder:
    return ObservationBuilder(ObservationSpec.create(spec), spec, HeightmapProjector(camera, spec))


def state(yaw: float = 0.4, closure: float = 0.3, ee=EE) -> ArmState:
    return ArmState(ee_pos=np.array(ee, dtype=np.float64), ee_yaw=yaw, gripper=closure)


def test_gripper_view_spec_fields_and_round_trip():
    assert GRIPPER_VIEW.channels == 2 and GRIPPER_VIEW.extent == pytest.approx(0.45)
    assert GRIPPER_VIEW.cell_size == pytest.approx(0.45 / 64) and SPEC_VERSION == 2
    assert HeightmapSpec.from_dict(GRIPPER_VIEW.to_dict()) == GRIPPER_VIEW
    assert ObservationSpec.create(GRIPPER_VIEW)["heightmap"].shape == (2, 64, 64)
    assert HeightmapSpec(64, WORKSPACE).channels == 1 and HeightmapSpec(64, WORKSPACE).extent == pytest.approx(0.3)
    with pytest.raises(SpecError, match="channels"):
        HeightmapSpec.from_dict({**GRIPPER_VIEW.to_dict(), "channels": 1})
    with pytest.raises(SpecError, match="view 'side'"):
        HeightmapSpec(64, WORKSPACE, view="side")
    with pytest.raises(SpecError, match="workspace view covers"):
        HeightmapSpec(64, WORKSPACE, extent=0.5)
    with pytest.raises(SpecError, match="spec version 1; this robot-stack uses spec version 2"):
        check_spec_version(1, "package p.onnx")


def test_grid_is_centred_on_the_ee_and_heights_are_relative_to_it():
    obs = build(GRIPPER_VIEW, camera_above(EE[:2]))(scene_about_ee().render_depth(camera_above(EE[:2])), state())
    hm = obs["heightmap"]
    assert hm.shape == (2, 64, 64) and hm.dtype == np.float32
    d = cell_offsets(GRIPPER_VIEW)
    col, row = np.argmin(np.abs(d - 0.08)), np.argmin(np.abs(d - 0.02))  # the first box's centre
    assert hm[0, row, col] == pytest.approx(0.05 - EE[2], abs=1e-3)
    corner = hm[0, :4, -4:]  # far from every box and the fingers: the table, ee height below
    np.testing.assert_allclose(corner, -EE[2], atol=1e-3)
    np.testing.assert_allclose(hm[1], 1.0 - 0.3)  # the opening, tiled
    np.testing.assert_allclose(obs["gripper"], [0.3, EE[2] / 0.3], rtol=1e-6)


def test_fingers_are_drawn_at_the_centre_from_opening_and_yaw():
    open_mask, closed = finger_mask(GRIPPER_VIEW, 0.0, 0.0), finger_mask(GRIPPER_VIEW, 1.0, 0.0)
    d = cell_offsets(GRIPPER_VIEW)
    rows, cols = np.nonzero(open_mask)
    assert np.all(np.abs(d[rows]) <= 0.01) and set(np.sign(d[cols])) == {-1.0, 1.0}  # apart along x at yaw 0
    assert np.abs(d[cols]).max() > np.abs(d[np.nonzero(closed)[1]]).max()  # closing brings them together
    hm = build(GRIPPER_VIEW, camera_above(EE[:2]))(Scene().render_depth(camera_above(EE[:2])), state(0.0, 0.0))[
        "heightmap"]
    assert np.all(hm[0][open_mask] == 0.0) and np.all(hm[0][~open_mask] < -0.1)


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.1, 2.0])
def test_turning_the_gripper_by_90_degrees_turns_its_drawing(yaw):
    for closure in (0.0, 0.6):
        mask = finger_mask(GRIPPER_VIEW, closure, yaw)
        assert mask.any()
        np.testing.assert_array_equal(finger_mask(GRIPPER_VIEW, closure, yaw + math.pi / 2),
                                      act_on_image(QUARTER, mask))


def test_a_scene_turned_about_the_gripper_gives_the_turned_image():
    """The symmetry contract: scene and gripper turned by 90 degrees about the ee's vertical axis -> the image
    turned about its centre (exactly: the camera above the ee maps its pixel grid onto itself)."""
    camera = camera_above(EE[:2])
    builder = build(GRIPPER_VIEW, camera)
    before = builder(scene_about_ee().render_depth(camera), state(0.4))["heightmap"]
    after = builder(scene_about_ee(math.pi / 2).render_depth(camera), state(0.4 + math.pi / 2))["heightmap"]
    assert np.abs(before - act_on_image(QUARTER, before)).max() > 0.01  # the scene has no symmetry of its own
    np.testing.assert_allclose(after, act_on_image(QUARTER, before), atol=1e-6)


def test_moving_the_gripper_moves_the_view_with_it():
    camera = camera_above((0.5, 0.0))
    builder = build(GRIPPER_VIEW, camera)
    depth = scene_about_ee().render_depth(camera)
    here = builder(depth, state(0.0))["heightmap"][0]
    shift = 10 * GRIPPER_VIEW.cell_size  # ten cells along +x: the scene moves ten columns left
    there = builder(depth, state(0.0, ee=(EE[0] + shift, EE[1], EE[2])))["heightmap"][0]
    mask = finger_mask(GRIPPER_VIEW, 0.3, 0.0)
    keep = ~mask[:, :-10] & ~mask[:, 10:]
    np.testing.assert_allclose(there[:, :-10][keep], here[:, 10:][keep], atol=2e-3)


def test_workspace_view_is_the_plain_projector():
    spec = HeightmapSpec(64, WORKSPACE)
    camera = camera_above((0.5, 0.0))
    depth = scene_about_ee().render_depth(camera)
    obs = build(spec, camera)(depth, state())
    np.testing.assert_array_equal(obs["heightmap"][0], HeightmapProjector(camera, spec)(depth))


def test_arm_vector_round_trip():
    s = state(1.2, 0.7)
    v = arm_vector(s)
    assert v.dtype == np.float64 and v.shape == (5,)
    back = arm_state_from(v)
    np.testing.assert_allclose(back.ee_pos, EE, atol=1e-6)
    assert back.ee_yaw == pytest.approx(1.2) and back.gripper == pytest.approx(0.7)


def test_heights_above_table_inverts_the_observation_outside_the_fingers():
    heights = np.random.default_rng(0).uniform(0.0, 0.1, (64, 64)).astype(np.float32)
    s = state()
    back = heights_above_table(heightmap_image(heights, s, GRIPPER_VIEW), s, GRIPPER_VIEW)
    fingers = finger_mask(GRIPPER_VIEW, s.gripper, s.ee_yaw)
    np.testing.assert_allclose(back[~fingers], heights[~fingers], atol=1e-6)
    np.testing.assert_allclose(back[fingers], np.maximum(heights[fingers], EE[2]), atol=1e-6)  # pads at the ee
    flat = HeightmapSpec(64, WORKSPACE)
    np.testing.assert_array_equal(heights_above_table(heightmap_image(heights, s, flat), s, flat), heights)


def test_builder_refuses_an_observation_spec_of_another_view():
    with pytest.raises(SpecError, match="gripper view"):
        ObservationBuilder(ObservationSpec.create(HeightmapSpec(64, WORKSPACE)), GRIPPER_VIEW, lambda f, c=None: f)
