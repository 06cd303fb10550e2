"""The robosuite tasks behind ``sim.make_env``: Lift, Stack and Door from robosuite, Push and Reach defined here.

Push and Reach are robosuite Lift variants: Push adds a flat goal pad (visible to the depth camera, no
collision) and succeeds when the cube's centre is within ``PUSH_SUCCESS_RADIUS`` of the goal's (the pad's, moved by
the ``world_goal`` variant's hidden offset, ``SceneEdits.goal_offset``); Reach
removes nothing (the cube is parked outside the workspace) and adds a target pad the gripper must hover
over. Object placement for every task is done by ``sim.env`` from the env's own seeded generator, so
the robosuite placement samplers are only used to build the scene.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from robosuite import macros
from robosuite.controllers import load_composite_controller_config
from robosuite.environments.manipulation.door import Door
from robosuite.environments.manipulation.lift import Lift
from robosuite.environments.manipulation.stack import Stack
from robosuite.models.objects import CylinderObject
from robosuite.utils.mjcf_utils import new_geom

PUSH_SUCCESS_RADIUS = 0.03
GOAL_RADIUS = 0.03
GOAL_HALF_HEIGHT = 0.004  # a 8 mm pad: tall enough for a heightmap cell, flat enough to push across


Box = tuple[float, float, float, float, float]  # MuJoCo world x, y, then half sizes x, y and a fifth number


@dataclass(frozen=True)
class SceneEdits:
    """What a variant adds to a scene: a table patch (x, y, half_x, half_y, sliding friction), a wall (x, y, half_x,
    half_y, height), the push goal's offset (metres x, y) from the visible pad."""

    friction_patch: Box | None = None
    wall: Box | None = None
    goal_offset: tuple[float, float] = (0.0, 0.0)


class _SceneEdits:
    """Mixin: adds a goal pad, an optional high-friction table patch and an optional wall to any robosuite table
    task."""

    goal_pad: bool = False
    edits: SceneEdits = SceneEdits()

    def _load_model(self) -> None:
        super()._load_model()
        if self.edits.friction_patch is not None:
            self._add_friction_patch()
        if self.edits.wall is not None:
            self._add_wall()
        if self.goal_pad:
            self.goal = CylinderObject(name="goal", size=[GOAL_RADIUS, GOAL_HALF_HEIGHT], rgba=[0.1, 0.8, 0.1, 1],
                                       obj_type="visual", joints=None)
            self.model.merge_objects([self.goal])

    def _add_friction_patch(self) -> None:
        x, y, hx, hy, friction = self.edits.friction_patch
        arena = self.model.mujoco_arena
        table_half_z = arena.table_half_size[2]
        # Raised 1 mm above the table so that an object on it touches only the patch.
        local = [x - arena.table_offset[0], y - arena.table_offset[1], table_half_z + 0.0005]
        arena.table_body.append(new_geom(name="friction_patch", type="box", size=[hx, hy, 0.0005], pos=local,
                                         group=0, friction=[friction, 0.005, 0.0001], rgba=[0.6, 0.5, 0.3, 1]))

    def _add_wall(self) -> None:
        x, y, hx, hy, height = self.edits.wall
        arena = self.model.mujoco_arena
        local = [x - arena.table_offset[0], y - arena.table_offset[1], arena.table_half_size[2] + height / 2]
        arena.table_body.append(new_geom(name="variant_wall", type="box", size=[hx, hy, height / 2], pos=local,
                                         group=0, rgba=[0.5, 0.5, 0.55, 1]))

    def _setup_references(self) -> None:
        super()._setup_references()
        if self.goal_pad:
            self.goal_body_id = self.sim.model.body_name2id(self.goal.root_body)


class PushTask(_SceneEdits, Lift):
    goal_pad = True

    def _check_success(self) -> bool:
        cube = self.sim.data.body_xpos[self.cube_body_id][:2]
        goal = self.sim.model.body_pos[self.goal_body_id][:2] + np.asarray(self.edits.goal_offset)
        return bool(np.linalg.norm(cube - goal) < PUSH_SUCCESS_RADIUS)

    def reward(self, action=None) -> float:
        return 1.0 if self._check_success() else 0.0


class ReachTask(_SceneEdits, Lift):
    goal_pad = True


class LiftTask(_SceneEdits, Lift):
    pass


class StackTask(_SceneEdits, Stack):
    pass


# robosuite's door panel and frame posts reach 0.3 m above and below the door's centre, the handle 2.5 cm below
# it: a top-down gripper holding the handle would have its hand over the panel. The door is cut down to a low
# "cabinet door" whose panel and posts end DOOR_TOP below the handle's centre (door-body z), DOOR_DEPTH tall.
DOOR_TOP = -0.05
DOOR_DEPTH = 0.2


class DoorTask(_SceneEdits, Door):
    def _load_model(self) -> None:
        super()._load_model()
        for geom in self.door.worldbody.iter("geom"):
            name = geom.get("name", "").removesuffix("_vis")
            if name.endswith(("panel", "r_frame", "l_frame")):
                size = [float(v) for v in geom.get("size").split()]
                pos = [float(v) for v in geom.get("pos", "0 0 0").split()]
                size[-1] = DOOR_DEPTH / 2  # box: z half-size; cylinder: half-length (along z)
                pos[2] = DOOR_TOP - DOOR_DEPTH / 2
                geom.set("size", " ".join(map(str, size)))
                geom.set("pos", " ".join(map(str, pos)))


TASK_CLASSES = {"lift": LiftTask, "stack": StackTask, "door": DoorTask, "push": PushTask, "reach": ReachTask}


@contextlib.contextmanager
def physics_timestep(seconds: float) -> Iterator[None]:
    """robosuite reads its substep length from a module global while building an env."""
    saved = macros.SIMULATION_TIMESTEP
    macros.SIMULATION_TIMESTEP = seconds
    try:
        yield
    finally:
        macros.SIMULATION_TIMESTEP = saved


def controller_config(robot: str) -> dict:
    """OSC pose control whose inputs are metric deltas in the world frame (input range = output range)."""
    cfg = load_composite_controller_config(controller="BASIC", robot=robot)
    arm_key = "right" if "right" in cfg["body_parts"] else next(iter(cfg["body_parts"]))
    cfg["body_parts"] = {arm_key: cfg["body_parts"][arm_key]}
    cfg["body_parts"][arm_key].update(type="OSC_POSE", input_max=1.0, input_min=-1.0, output_max=1.0,
                                      output_min=-1.0, input_ref_frame="world", input_type="delta")
    return cfg


def build_robosuite_env(task: str, robot: str, control_freq: int, timestep: float, seed: int,
                        edits: SceneEdits = SceneEdits()):
    cls = type(TASK_CLASSES[task].__name__, (TASK_CLASSES[task],), {"edits": edits})
    kwargs = {"use_latch": False} if task == "door" else {}
    with physics_timestep(timestep):
        env = cls(robots=robot, controller_configs=controller_config(robot), initialization_noise=None,
                  has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False, use_object_obs=False,
                  control_freq=control_freq, horizon=10**9, ignore_done=True, hard_reset=False,
                  reward_shaping=True, lite_physics=True, seed=seed, **kwargs)
    # The observation comes from our depth camera; robosuite's own observables would be refreshed every substep.
    for name in list(env.observation_names):
        env.modify_observable(name, "enabled", False)
        env.modify_observable(name, "active", False)
    return env
