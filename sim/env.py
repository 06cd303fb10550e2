"""``ManipulationEnv``: a robosuite task seen through a top-down depth camera, as a gymnasium env.

Frames: everything the env reports is in the stack's world frame (docs/ARCHITECTURE.md, "Frames"): x/y of the robot's
default base position, z = 0 at the table top. ``frame_origin`` is that origin in MuJoCo's world.

Besides the gymnasium API, the env offers what a sim-backed ``Arm`` needs:
``apply_metric(dpos, dyaw, gripper)`` (one control period of a metric world-frame delta),
``arm_state()`` (an ``ArmState`` with ee position, yaw and gripper closure) and ``camera`` (a
``robot_stack.devices.Camera``). ``layout()``/``reset(options={"layout": ...})`` read and set object
placements, which the experts and the symmetry checks use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from robot_stack.devices import ArmState
from robot_stack.observation import ObservationBuilder
from robot_stack.perception import HeightmapProjector
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, SpecError, WorkspaceBox
from sim import tasks
from sim.cameras import CAMERA_CLASSES, MASKED_GROUP, DepthNoise, top_down_spec
from sim.config import SimConfig
from sim.variants import WALL_HEIGHT, WALL_INNER_Y, WALL_THICKNESS, Variant
from sim.variants import check_task as check_variant_task


@dataclass(frozen=True)
class TaskDefaults:
    horizon: int
    dpos: float
    dtheta: float = math.pi / 8


TASK_DEFAULTS = {
    "reach": TaskDefaults(horizon=25, dpos=0.05),
    "push": TaskDefaults(horizon=80, dpos=0.04),  # the expert needs up to ~75 steps when it re-lines behind the cube
    "lift": TaskDefaults(horizon=50, dpos=0.05),
    "stack": TaskDefaults(horizon=80, dpos=0.05),
    "door": TaskDefaults(horizon=80, dpos=0.04),
}
TASKS = tuple(TASK_DEFAULTS)

WORKSPACE = WorkspaceBox()  # x 0.35..0.65, y -0.15..0.15, z 0..0.3 in the robot-base / table-top frame
HOME_HEIGHT = 0.15  # ee height above the table at reset
PLACEMENT_RADIUS = 0.09  # objects start in a disc about the workspace centre: C_N-invariant for every N
REACH_HEIGHT = 0.05  # the reach target hovers this high above its pad
REACH_TOLERANCE = 0.02
DOOR_HANDLE_HEIGHT = 0.07  # the door handle's centre above the table: under the ee's home height, top-down reachable
MIN_EE_HEIGHT = 0.005  # the ee may not be commanded into the table
# robosuite draws a scene's build-time randomness (Lift's cube half-sizes, U(2.0, 2.2 cm): lift, push, reach) once,
# from default_rng(seed), when the model is built; hard_reset=False keeps it for the env's life and reset(seed=...)
# cannot redraw it. Unseeded (seed None) it came from OS entropy, so an episode was not determined by its reset seed
# and sim config: a store recorded in one process did not replay in another. Unseeded builds take this seed instead.
UNSEEDED_SCENE_SEED = 0


def check_task(task: str) -> None:
    if task not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {list(TASKS)}")


class ManipulationEnv(gym.Env):
    metadata = {"render_modes": ["depth_array"], "render_fps": 20}

    def __init__(self, task: str, cfg: SimConfig) -> None:
        check_task(task)
        self.task, self.cfg = task, cfg
        self.variant = Variant.create(cfg.variant, cfg.variant_strength)
        check_variant_task(self.variant.name, task)
        defaults = TASK_DEFAULTS[task]
        self.horizon = cfg.horizon or defaults.horizon
        self.action_spec = ActionSpec(dpos=cfg.dpos or defaults.dpos, dtheta=cfg.dtheta or defaults.dtheta)
        self.heightmap_spec = HeightmapSpec(size=cfg.heightmap_size, workspace=WORKSPACE, view=cfg.view)
        self.observation_spec = ObservationSpec.create(self.heightmap_spec)
        self.center = np.array(WORKSPACE.center[:2])
        self.scene_seed = UNSEEDED_SCENE_SEED if cfg.seed is None else cfg.seed
        self._rs = tasks.build_robosuite_env(task, cfg.robot, cfg.control_freq, cfg.physics_timestep,
                                             self.scene_seed, self._scene_edits())
        self._model, self._data = self._rs.sim.model._model, self._rs.sim.data._data
        self._robot = self._rs.robots[0]
        self._arm = self._robot.arms[0]
        self.frame_origin = np.array([*self._robot.base_pos[:2], self._rs.table_offset[2]], dtype=np.float64)
        self._apply_variant_physics()
        resolution = cfg.camera_resolution or int(round(1.5 * cfg.heightmap_size))
        spec = top_down_spec((*self.center, 0.0), cfg.camera_height, self.heightmap_spec.extent, resolution)
        self.camera = CAMERA_CLASSES[cfg.camera](self._model, self._data, spec, self.frame_origin,
                                                 DepthNoise(cfg.depth_noise_std, cfg.depth_dropout), cfg.seed)
        self.projector = HeightmapProjector(spec, self.heightmap_spec)
        self.build_observation = ObservationBuilder(self.observation_spec, self.heightmap_spec, self.projector)
        self.observation_space = gym.spaces.Dict({f.name: self._box(f.name, f.shape)
                                                  for f in self.observation_spec.fields})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_spec.dim,), np.float32)
        self._np_random = np.random.default_rng(cfg.seed)
        # its own stream, so that a random start yaw leaves the layouts of a seed as they are
        self._yaw_random = np.random.default_rng(None if cfg.seed is None else cfg.seed + 2)
        self._steps = 0
        self._last_depth: np.ndarray | None = None
        self._observed_state: ArmState | None = None
        self._set_home_pose()

    def _box(self, name: str, shape: tuple[int, ...]) -> gym.spaces.Box:
        if name != "heightmap":
            return gym.spaces.Box(0.0, 1.0, shape, np.float32)
        low, high = np.zeros(shape, np.float32), np.ones(shape, np.float32)  # channel 1 (gripper view): opening
        low[0], high[0] = self.heightmap_spec.value_range
        return gym.spaces.Box(low, high, shape, np.float32)

    # ----- gymnasium API -----
    @property
    def policy_spec_parts(self) -> tuple[ObservationSpec, ActionSpec, HeightmapSpec]:
        return self.observation_spec, self.action_spec, self.heightmap_spec

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
            self.camera.seed(seed + 1)
            self._yaw_random = np.random.default_rng(seed + 2)
        options = options or {}
        unknown = sorted(set(options) - {"layout"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; valid: ['layout']")
        self._robot.init_qpos = self._start_qpos()
        self._rs.reset()
        layout = options.get("layout") or self.sample_layout()
        self._place(layout)
        self._steps = 0
        return self.observe(), {"success": self.is_success(), "clipped": 0, "layout": self.layout()}

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        clipped, n_clipped = self._check_action(action)
        metric = self.action_spec.to_metric(clipped)
        self.apply_metric(metric[:3], float(metric[3]), float(metric[4]))
        self._steps += 1
        obs = self.observe()
        success = self.is_success()
        reward = float(success) if self.cfg.reward == "sparse" else self.shaped_reward()
        truncated = self._steps >= self.horizon
        return obs, reward, success, truncated, {"success": success, "clipped": n_clipped}

    def render(self) -> np.ndarray | None:
        return self._last_depth

    def close(self) -> None:
        self.camera.close()
        self._rs.close()

    # ----- the metric interface (sim-backed arm) -----
    def apply_metric(self, dpos: np.ndarray, dyaw: float = 0.0, gripper: float = -1.0) -> None:
        """One control period towards ee + ``dpos`` (metres, world), yaw + ``dyaw``; gripper -1 open, +1 close.

        The target is clamped to the workspace box; the actuator-bias variant acts here.
        """
        dpos = np.asarray(dpos, dtype=np.float64).copy()
        if dpos.shape != (3,) or not np.all(np.isfinite(dpos)) or not math.isfinite(dyaw) or not math.isfinite(gripper):
            raise ValueError(f"apply_metric needs a finite dpos[3], dyaw and gripper, got {dpos}, {dyaw}, {gripper}")
        dpos[0] = self.variant.bias_dx(dpos[0])
        ee = self.ee_position()
        low = WORKSPACE.low + np.array([0.0, 0.0, MIN_EE_HEIGHT])
        target = np.clip(ee + dpos, low, WORKSPACE.high)
        action = np.zeros(self._rs.action_dim)
        action[:3] = target - ee
        action[5] = dyaw
        action[6] = float(np.clip(gripper, -1.0, 1.0))
        self._rs.step(action)

    def arm_state(self) -> ArmState:
        return ArmState(ee_pos=self.ee_position(), ee_yaw=self.ee_yaw(), gripper=self.gripper_closure(),
                        timestamp=float(self._data.time))

    def ee_position(self) -> np.ndarray:
        return np.array(self._data.site_xpos[self._eef_site]) - self.frame_origin

    def ee_yaw(self) -> float:
        rot = self._data.site_xmat[self._eef_site].reshape(3, 3)
        return float(math.atan2(rot[1, 0], rot[0, 0]))

    def gripper_closure(self) -> float:
        """0 fully open, 1 fully closed (from the finger joint positions)."""
        q = self._data.qpos[self._finger_qpos]
        ranges = self._model.jnt_range[self._finger_joints]
        opening = np.abs(q).sum() / np.abs(ranges).max(axis=1).sum()
        return float(np.clip(1.0 - opening, 0.0, 1.0))

    # ----- observation -----
    def observe(self) -> dict[str, np.ndarray]:
        """One camera frame and the arm state through the observation path the control loop uses too."""
        frame = self.camera.read()
        self._last_depth = frame.depth
        self._observed_state = self.arm_state()
        return self.build_observation(frame, self._observed_state)

    def observed_arm_state(self) -> ArmState | None:
        """The arm state the last observation was built from (what a recorder stores beside its depth frame)."""
        return self._observed_state

    # ----- task state, placement, success -----
    def object_pose(self, name: str) -> tuple[np.ndarray, float]:
        """Position (stack frame) and yaw of a task object: cube, cubeA, cubeB, goal, door."""
        body = self._object_body(name)
        if name in ("goal", "door"):
            pos, quat = self._model.body_pos[body], self._model.body_quat[body]
        else:
            pos, quat = self._data.xpos[body], self._data.xquat[body]
        yaw = 2.0 * math.atan2(quat[3], quat[0])
        return np.array(pos) - self.frame_origin, yaw

    def box_size(self, name: str) -> np.ndarray:
        """Edge lengths x, y, z (metres) of a box object (cube, cubeA, cubeB) as this scene built it: robosuite
        draws them when it builds the model (``UNSEEDED_SCENE_SEED``)."""
        return 2.0 * np.asarray(getattr(self._rs, name).size, dtype=float)

    def layout(self) -> dict[str, tuple[float, float, float]]:
        """{object: (x, y, yaw)} of the movable/placeable objects, stack frame."""
        out = {}
        for name in self._layout_names():
            pos, yaw = self.object_pose(name)
            out[name] = (float(pos[0]), float(pos[1]), float(yaw))
        return out

    def sample_layout(self) -> dict[str, tuple[float, float, float]]:
        rng = self._np_random
        if self.task == "door":
            # The handle lands near the workspace centre; the door's root pose follows from it.
            handle = self.center + rng.uniform(-0.02, 0.02, 2) + np.array([0.0, -0.02])
            yaw = -math.pi / 2
            c, s = math.cos(yaw), math.sin(yaw)
            root = handle - np.array([[c, -s], [s, c]]) @ self._handle_offset[:2]
            return {"door": (float(root[0]), float(root[1]), yaw)}
        names = self._layout_names()
        for _ in range(1000):
            points = [self._sample_disc(rng) for _ in names]
            if self.objects_apart(points):
                return {n: (float(p[0]), float(p[1]), 0.0) for n, p in zip(names, points, strict=True)}
        raise RuntimeError("could not place the objects apart; PLACEMENT_RADIUS too small")

    def objects_apart(self, points: list[np.ndarray]) -> bool:
        """Whether sampled x/y ``points`` (in ``_layout_names`` order) make a layout: push and stack keep the first
        object 8 cm from the second, and push from the true goal too (world_goal), so no episode starts solved."""
        if len(points) < 2:
            return True
        min_gap = {"push": 0.08, "stack": 0.08, "lift": 0.0, "reach": 0.0}[self.task]
        gap = np.asarray(points[0], dtype=float)[:2] - np.asarray(points[1], dtype=float)[:2]
        return min(np.linalg.norm(gap), np.linalg.norm(gap - self.variant.goal_offset())) >= min_gap

    def _sample_disc(self, rng: np.random.Generator) -> np.ndarray:
        radius = PLACEMENT_RADIUS * math.sqrt(rng.uniform())
        half = self.variant.placement_half_angle()  # pi but for placement: a sector about +x
        angle = rng.uniform(-half, half)
        return self.center + radius * np.array([math.cos(angle), math.sin(angle)])

    def raise_object(self, name: str, height: float) -> None:
        """Hold a free object (cube, cubeA, cubeB) at rest ``height`` metres higher; the next steps drop it."""
        body = self._object_body(name)
        if name in ("goal", "door"):
            raise ValueError(f"{name!r} is fixed to the world; only free objects can be raised")
        joint = self._model.body_jntadr[body]
        adr, dof = self._model.jnt_qposadr[joint], self._model.jnt_dofadr[joint]
        self._data.qpos[adr + 2] += height
        self._data.qvel[dof:dof + 6] = 0.0
        mujoco.mj_forward(self._model, self._data)

    def is_success(self) -> bool:
        if self.task == "reach":
            target = self.reach_target()
            return bool(np.linalg.norm(self.ee_position() - target) < REACH_TOLERANCE)
        return bool(self._rs._check_success())

    def shaped_reward(self) -> float:
        if self.task == "reach":
            return float(1.0 - np.tanh(10.0 * np.linalg.norm(self.ee_position() - self.reach_target())))
        if self.task == "push":
            cube, _ = self.object_pose("cube")
            goal = self.goal_position()
            reach = 1.0 - np.tanh(10.0 * np.linalg.norm(self.ee_position()[:2] - cube[:2]))
            return float(0.25 * reach + (1.0 - np.tanh(10.0 * np.linalg.norm(cube[:2] - goal[:2]))))
        return float(self._rs.reward(None))

    def goal_position(self) -> np.ndarray:
        """Where push must bring the cube (reach: hover over): the goal pad, moved by the world_goal variant's
        offset, which the heightmap does not show."""
        pad, _ = self.object_pose("goal")
        return np.array([*(pad[:2] + self.variant.goal_offset()), pad[2]])

    def reach_target(self) -> np.ndarray:
        goal = self.goal_position()
        return np.array([goal[0], goal[1], REACH_HEIGHT])

    def door_handle(self) -> np.ndarray:
        return np.array(self._data.site_xpos[self._rs.door_handle_site_id]) - self.frame_origin

    def door_hinge_angle(self) -> float:
        """Radians the door is open (robosuite counts it a success above 0.3)."""
        return float(self._data.qpos[self._rs.hinge_qpos_addr])

    def door_opening_direction(self) -> np.ndarray:
        """Unit world-frame direction in which the handle moves when the door opens (tangent of its arc)."""
        joint = self._model.joint(self._rs.door.joints[0]).id
        axis = np.array(self._data.xaxis[joint])
        radial = np.array(self._data.site_xpos[self._rs.door_handle_site_id]) - self._data.xanchor[joint]
        tangent = np.cross(axis, radial)
        tangent[2] = 0.0
        return tangent / max(np.linalg.norm(tangent), 1e-9)

    # ----- internals -----
    def _layout_names(self) -> tuple[str, ...]:
        return {"push": ("cube", "goal"), "lift": ("cube",), "stack": ("cubeA", "cubeB"), "reach": ("goal",),
                "door": ("door",)}[self.task]

    def _object_body(self, name: str) -> int:
        rs = self._rs
        ids = {"cube": getattr(rs, "cube_body_id", None), "cubeA": getattr(rs, "cubeA_body_id", None),
               "cubeB": getattr(rs, "cubeB_body_id", None), "goal": getattr(rs, "goal_body_id", None),
               "door": self._model.body(rs.door.root_body).id if hasattr(rs, "door") else None}
        if ids.get(name) is None:
            valid = [k for k, v in ids.items() if v is not None]
            raise ValueError(f"task {self.task!r} has no object {name!r}; objects: {valid}")
        return ids[name]

    def _place(self, layout: dict[str, tuple[float, float, float]]) -> None:
        unknown = sorted(set(layout) - set(self._layout_names()))
        if unknown:
            raise ValueError(f"layout names {unknown} are not objects of task {self.task!r}: "
                             f"{list(self._layout_names())}")
        if self.task == "reach":
            self._park_cube()
        for name, (x, y, yaw) in layout.items():
            quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
            body = self._object_body(name)
            xy = np.array([x, y]) + self.frame_origin[:2]
            if name in ("goal", "door"):
                z = tasks.GOAL_HALF_HEIGHT if name == "goal" else self._door_z
                self._model.body_pos[body] = [xy[0], xy[1], self.frame_origin[2] + z]
                self._model.body_quat[body] = quat
            else:
                self._set_free_body(body, xy, quat)
        mujoco.mj_forward(self._model, self._data)

    def _set_free_body(self, body: int, xy: np.ndarray, quat: np.ndarray) -> None:
        joint = self._model.body_jntadr[body]
        adr = self._model.jnt_qposadr[joint]
        geom = self._model.body_geomadr[body]
        half_z = float(self._model.geom_size[geom][2]) if self._model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX \
            else 0.02
        self._data.qpos[adr:adr + 7] = [xy[0], xy[1], self.frame_origin[2] + half_z + 0.001, *quat]
        self._data.qvel[self._model.jnt_dofadr[joint]:self._model.jnt_dofadr[joint] + 6] = 0.0

    def _park_cube(self) -> None:
        far = self.frame_origin[:2] + np.array([WORKSPACE.x_max + 0.15, WORKSPACE.y_max + 0.1])
        self._set_free_body(self._rs.cube_body_id, far, np.array([1.0, 0, 0, 0]))

    def _check_action(self, action) -> tuple[np.ndarray, int]:
        try:
            arr = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"action must be 5 numbers (dx, dy, dz, dtheta, gripper), got {action!r}") from exc
        if arr.shape != (self.action_spec.dim,):
            raise SpecError(f"action must have shape [{self.action_spec.dim}] (dx, dy, dz, dtheta, gripper), "
                            f"got {list(arr.shape)}")
        return self.action_spec.clip(arr)

    def _scene_edits(self) -> tasks.SceneEdits:
        # Built before the robot's base position is known: robosuite puts the Panda base at x = -0.56.
        x0 = -0.56 + self.center[0]
        half = (WORKSPACE.x_max - WORKSPACE.x_min) / 2
        v = self.variant
        patch = (x0 + half / 2 + 0.05, self.center[1], half / 2 + 0.05, half + 0.1, v.value) if (
            v.name == "table_friction" and v.active) else None
        wall = (x0, self.center[1] + WALL_INNER_Y + WALL_THICKNESS / 2, v.value / 2, WALL_THICKNESS / 2,
                WALL_HEIGHT) if v.name == "wall" and v.active else None
        return tasks.SceneEdits(patch, wall, tuple(float(x) for x in v.goal_offset()))

    def _apply_variant_physics(self) -> None:
        if self.variant.name == "gravity_tilt":
            tilt = math.radians(self.variant.value)
            self._model.opt.gravity[:] = 9.81 * np.array([math.sin(tilt), 0.0, -math.cos(tilt)])
        if self.variant.name == "base_in_view":
            root = self._model.body(self._robot.robot_model.root_body).id
            self._model.body_pos[root][0] += self.variant.value
        self._mask_robot_from_cameras()
        self._eef_site = self._arm_site()
        grip = self._robot.gripper[self._arm]
        self._finger_joints = [self._model.joint(n).id for n in grip.joints]
        self._finger_qpos = [self._model.jnt_qposadr[j] for j in self._finger_joints]
        if self.task == "door":
            self._rs.reset()
            root = self._object_body("door")
            rot = self._data.xmat[root].reshape(3, 3)
            self._handle_offset = rot.T @ (self._data.site_xpos[self._rs.door_handle_site_id] - self._data.xpos[root])
            # Placed so the handle's centre is DOOR_HANDLE_HEIGHT above the table (tasks.DoorTask cut the door down).
            self._door_z = DOOR_HANDLE_HEIGHT - float(self._handle_offset[2])

    def _mask_robot_from_cameras(self) -> None:
        """Hide the arm's link meshes from the depth cameras, as a real robot self-filter does (and because
        ray-casting meshes dominates the frame time); the finger pads stay visible, and base_in_view
        keeps the base links and mount."""
        keep = ("link0", "link1", "mount") if self.variant.name == "base_in_view" and self.variant.active else ()
        for geom in range(self._model.ngeom):
            name = self._model.geom(geom).name
            robot_part = name.startswith(("robot0_", "gripper0_", "fixed_mount0_"))
            if robot_part and self._model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_MESH and not any(
                    k in name for k in keep):
                self._model.geom_group[geom] = MASKED_GROUP
        if self.task in ("push", "reach"):
            for geom in range(self._model.ngeom):
                if self._model.geom_bodyid[geom] == self._rs.goal_body_id:
                    self._model.geom_group[geom] = 0  # visible to the cameras, still no contacts
        if self.task == "door":
            for geom in range(self._model.ngeom):
                # the door's collision geoms sit in group 1 (robosuite's XML); the cameras see group 0
                if self._model.geom(geom).name.startswith("Door_") and self._model.geom_contype[geom]:
                    self._model.geom_group[geom] = 0

    def _arm_site(self) -> int:
        return int(self._robot.eef_site_id[self._arm])

    def _set_home_pose(self) -> None:
        """Drive the ee above the workspace centre once, and make that joint pose the reset pose."""
        self._rs.reset()
        home = np.array([*self.center, HOME_HEIGHT])
        for _ in range(60):
            delta = home - self.ee_position()
            if np.linalg.norm(delta) < 1e-3:
                break
            self.apply_metric(np.clip(delta, -0.05, 0.05), 0.0, -1.0)
        self._home_qpos = np.array(self._data.qpos[self._robot._ref_joint_pos_indexes])
        self._robot.init_qpos = self._home_qpos.copy()

    def _start_qpos(self) -> np.ndarray:
        """The home joint pose, with the wrist (the last arm joint turns the ee about the vertical) at a random yaw
        when ``random_start_yaw`` is set."""
        qpos = self._home_qpos.copy()
        if self.cfg.random_start_yaw:
            qpos[-1] += self._yaw_random.uniform(-math.pi / 2, math.pi / 2)
        return qpos
