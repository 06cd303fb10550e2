"""Depth frame + arm state -> the policy's observation: the one path the sim env and the control loop share.

``ObservationBuilder(observation_spec, heightmap_spec, projector)(frame, state)`` projects the frame and fills
every field of the spec. The heightmap spec's view decides the image (docs/ARCHITECTURE.md, "Observation"):

* ``workspace``: one channel, heights above the table over the fixed workspace.
* ``gripper``: the grid centred on the ee's x/y; channel 0 holds heights relative to the ee (every pixel tells the
  ee height) with the two finger pads drawn in at the ee height from the opening and yaw, channel 1 the gripper's
  opening (0 closed .. 1 open) tiled, so it reaches the convolutions. A rotation of the scene and the gripper
  about the ee's vertical axis is then a rotation of the image about its centre.

``arm_vector`` / ``arm_state_from`` are the recorder's per-step arm state, so stores with raw depth can be
re-projected into another view (``robot_stack.recorder.reproject``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_stack.devices import ArmState
from robot_stack.specs import HeightmapSpec, ObservationSpec, SpecError

ARM_FIELDS = ("x", "y", "z", "yaw", "closure")  # the recorder's per-step "arm" array, in this order


def arm_vector(state: ArmState) -> np.ndarray:
    """float64[5]: ee x, y, z (world, metres), yaw (radians), gripper closure (0 open .. 1 closed); float64 so a
    re-projection rebuilds the recorded observation bit for bit."""
    x, y, z = (float(v) for v in np.asarray(state.ee_pos, dtype=np.float64).reshape(3))
    return np.array([x, y, z, float(state.ee_yaw), float(state.gripper)], dtype=np.float64)


def arm_state_from(vector: np.ndarray) -> ArmState:
    v = np.asarray(vector, dtype=np.float64).reshape(len(ARM_FIELDS))
    return ArmState(ee_pos=v[:3].copy(), ee_yaw=float(v[3]), gripper=float(v[4]))


def cell_offsets(spec: HeightmapSpec) -> np.ndarray:
    """Metres from the map's centre to each cell centre along a row (x) or a column (y): float64[S]."""
    return (np.arange(spec.size, dtype=np.float64) + 0.5 - spec.size / 2) * spec.cell_size


def finger_mask(spec: HeightmapSpec, closure: float, yaw: float) -> np.ndarray:
    """bool[S, S]: the cells under the two finger pads of a gripper at the map's centre (rows +y, columns +x)."""
    foot = spec.gripper
    opening = 1.0 - float(np.clip(closure, 0.0, 1.0))
    half_gap = foot.finger_thickness / 2 + (foot.open_span - foot.finger_thickness) / 2 * opening
    angle = float(yaw) + foot.axis_yaw
    d = cell_offsets(spec)
    dx, dy = d[None, :], d[:, None]
    along = np.abs(dx * math.cos(angle) + dy * math.sin(angle))
    across = np.abs(-dx * math.sin(angle) + dy * math.cos(angle))
    return (np.abs(along - half_gap) <= foot.finger_thickness / 2) & (across <= foot.finger_width / 2)


def ee_height(state: ArmState, spec: HeightmapSpec) -> float:
    """The ee's height above the table (metres)."""
    return float(np.asarray(state.ee_pos)[2]) - spec.workspace.z_min


def gripper_image(heights: np.ndarray, state: ArmState, spec: HeightmapSpec) -> np.ndarray:
    """Absolute heights [S, S] of a map centred on the ee -> float32[2, S, S] (see the module docstring)."""
    relative = np.asarray(heights, dtype=np.float32) - np.float32(ee_height(state, spec))
    mask = finger_mask(spec, state.gripper, state.ee_yaw)
    relative[mask] = np.maximum(relative[mask], 0.0)
    low, high = spec.value_range
    out = np.empty((2, spec.size, spec.size), dtype=np.float32)
    np.clip(relative, low, high, out=out[0])
    out[1] = 1.0 - float(np.clip(state.gripper, 0.0, 1.0))
    return out


def gripper_vector(state: ArmState, spec: HeightmapSpec) -> np.ndarray:
    """float32[2]: gripper closure and the ee height over the box's height, each clipped to [0, 1]."""
    height = ee_height(state, spec) / spec.max_height
    return np.clip(np.array([state.gripper, height], dtype=np.float32), 0.0, 1.0)


def heightmap_image(heights: np.ndarray, state: ArmState, spec: HeightmapSpec) -> np.ndarray:
    """The ``heightmap`` field [C, S, S] from the projected heights [S, S] of this view."""
    if spec.gripper_centred:
        return gripper_image(heights, state, spec)
    return np.asarray(heights, dtype=np.float32)[None]


def heights_above_table(image: np.ndarray, state: ArmState, spec: HeightmapSpec) -> np.ndarray:
    """Channel 0 of a ``heightmap`` field [C, S, S] in metres above the table: ``heightmap_image``'s heights back,
    as clipped to ``spec.value_range`` and with the gripper view's finger pads drawn in."""
    heights = np.asarray(image[0], dtype=np.float32)
    return heights + np.float32(ee_height(state, spec)) if spec.gripper_centred else heights


def view_center(state: ArmState, spec: HeightmapSpec) -> tuple[float, float] | None:
    """Where the projector centres the grid: the ee's x/y for the gripper view, None (the workspace) otherwise."""
    if not spec.gripper_centred:
        return None
    x, y = (float(v) for v in np.asarray(state.ee_pos)[:2])
    return x, y


class ObservationBuilder:
    """``(frame, arm state) -> observation dict`` of ``observation`` (see the module docstring).

    ``projector(frame)`` (workspace view) or ``projector(frame, center_xy)`` (gripper view) returns float32[S, S]
    heights above the table: a ``HeightmapProjector`` built on ``heightmap``. Fields besides ``heightmap`` and
    ``gripper`` come from ``state.extra``.
    """

    def __init__(self, observation: ObservationSpec, heightmap: HeightmapSpec,
                 projector: Callable[..., np.ndarray]) -> None:
        want = (heightmap.channels, heightmap.size, heightmap.size)
        if observation["heightmap"].shape != want:
            raise SpecError(f"observation heightmap {list(observation['heightmap'].shape)} does not fit the "
                            f"{heightmap.view} view's {list(want)}")
        self.observation, self.heightmap, self.projector = observation, heightmap, projector

    def __call__(self, frame: Any, state: ArmState) -> dict[str, np.ndarray]:
        center = view_center(state, self.heightmap)
        heights = self.projector(frame) if center is None else self.projector(frame, center)
        return self.from_heights(heights, state)

    def from_heights(self, heights: np.ndarray, state: ArmState) -> dict[str, np.ndarray]:
        obs = {"heightmap": heightmap_image(heights, state, self.heightmap),
               "gripper": gripper_vector(state, self.heightmap)}
        for f in self.observation.fields:
            if f.name not in obs:
                obs[f.name] = np.asarray(state.extra[f.name], dtype=np.float32).reshape(f.shape)
        return obs
