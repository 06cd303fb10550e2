"""Perception: depth frames to top-down heightmaps (docs/frames.md).

``deproject`` gives camera-frame points, ``HeightmapProjector`` the orthographic heightmap over a
workspace box, ``gripper_crop`` a window around the gripper, ``fit_table_plane`` the table for the
calibration check. The group actions on heightmaps are in ``robot_stack.symmetry``.
"""

from robot_stack.perception.crop import gripper_crop, world_to_cell
from robot_stack.perception.plane import PlaneFit, fit_table_plane
from robot_stack.perception.projection import (
    HeightmapProjector,
    PerceptionError,
    camera_to_world,
    check_depth,
    deproject,
    project_plain_numpy,
)

__all__ = ["HeightmapProjector", "PerceptionError", "PlaneFit", "camera_to_world", "check_depth", "deproject",
           "fit_table_plane", "gripper_crop", "project_plain_numpy", "world_to_cell"]
