"""Scripted experts over the env's privileged state (object poses, ee position, gripper closure). Push, lift and
stack are Markovian (each action a function of the state the observation shows); door keeps a phase.

``act(obs, env)`` returns a [-1, 1] action; ``noise`` adds Gaussian noise of that std to every entry
(then clipped), for datasets with imperfect demonstrations.
"""

from __future__ import annotations

import numpy as np

from sim.env import ManipulationEnv, check_task

OPEN, CLOSE = -1.0, 1.0
HOVER = 0.10  # ee height above the table at which the experts move over the objects


class Expert:
    def __init__(self, env: ManipulationEnv, noise: float = 0.0, seed: int | None = None) -> None:
        if noise < 0:
            raise ValueError(f"expert noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.phase = 0
        self._wait = 0

    def act(self, obs: dict, env: ManipulationEnv) -> np.ndarray:
        return self.act_and_label(obs, env)[0]

    def act_and_label(self, obs: dict, env: ManipulationEnv) -> tuple[np.ndarray, np.ndarray]:
        """(the action to execute, with the expert's noise; the noise-free action it meant): executing the first and
        recording the second gives demonstrations of how to recover from off-course states (DART)."""
        clean = np.clip(self._act(env), -1.0, 1.0).astype(np.float32)
        if self.noise == 0:
            return clean, clean
        noisy = clean + self._rng.normal(0.0, self.noise, clean.shape)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32), clean

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def toward(env: ManipulationEnv, target: np.ndarray, gripper: float) -> tuple[np.ndarray, float]:
        """Action moving the ee towards ``target`` (stack frame), and the remaining distance."""
        delta = np.asarray(target, dtype=np.float64) - env.ee_position()
        move = np.clip(delta / env.action_spec.dpos, -1.0, 1.0)
        return np.array([*move, 0.0, gripper]), float(np.linalg.norm(delta))

    def _hold(self, steps: int) -> bool:
        """True once ``steps`` consecutive calls have passed (for the gripper to close or open)."""
        self._wait += 1
        if self._wait >= steps:
            self._wait = 0
            return True
        return False


class ReachExpert(Expert):
    def _act(self, env: ManipulationEnv) -> np.ndarray:
        return self.toward(env, env.reach_target(), OPEN)[0]


class PushExpert(Expert):
    """Come down behind the cube on the goal's far side and push it through to the goal.

    Markovian: the action is a function of the ee, cube and goal positions alone (no internal phase), so a policy
    that sees them can imitate every step, re-lining included. ``phase`` only reports which rule acted.
    """

    BEHIND = 0.05
    PUSH_HEIGHT = 0.015
    CLEAR = 0.065  # ee height that clears the 4 cm cube while lining up
    LOW = 0.035  # below this ee height the fingers are at the cube's side
    ON_LINE = 0.03  # largest sideways offset from the cube-goal line that still pushes
    OVER_START = 0.015  # within this of the start point behind the cube, come down

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        cube, _ = env.object_pose("cube")
        goal = env.goal_position()  # the pad, or the world_goal variant's hidden goal
        line = goal[:2] - cube[:2]
        direction = line / max(np.linalg.norm(line), 1e-6)
        behind = cube[:2] - direction * self.BEHIND
        ee = env.ee_position()
        offset = ee[:2] - cube[:2]
        along = float(offset @ direction)
        lateral = offset - direction * along
        if ee[2] < self.LOW and np.linalg.norm(lateral) < self.ON_LINE and along < -0.02:
            self.phase = 2  # push: aim at the point that leaves the cube on the goal, correcting sideways drift
            target = goal[:2] - direction * (self.BEHIND - 0.035)  # a little past: friction stops it short
            return self.toward(env, [*(target - lateral), self.PUSH_HEIGHT], CLOSE)[0]
        if np.linalg.norm(ee[:2] - behind) < self.OVER_START:
            self.phase = 1  # over the start point: down to pushing height
            return self.toward(env, [*behind, self.PUSH_HEIGHT], CLOSE)[0]
        self.phase = 0
        if ee[2] < self.CLEAR - 0.01:  # low but off the line: straight up before moving over the cube
            return self.toward(env, [*ee[:2], self.CLEAR], CLOSE)[0]
        return self.toward(env, [*behind, self.CLEAR], CLOSE)[0]


def square_up(scene: ManipulationEnv, cube_yaw: float) -> float:
    """Radians to turn the ee by to square the fingers to a cube's faces (a quarter turn repeats them)."""
    return float((cube_yaw - scene.ee_yaw() + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class PickExpert(Expert):
    """Lift: grasp the cube from above and raise it. Stack subclass places it on the other cube.

    Markovian like ``PushExpert``: each action is a function of the ee position, the measured gripper closure (an
    observation channel) and the cube poses, so the gripper's waits are conditions on the closure, not step counts.
    ``phase`` only reports which rule acted: 0 up and over the cube, 1 down round it, 2 close, 3 lift.
    """

    obj = "cube"
    LIFT_TO = 0.15  # ee height the cube is raised to
    LOW = HOVER - 0.02  # below this ee height, rise before moving sideways (the fingertips clear a 5 cm cube)
    GRASP_XY = 0.02  # ee this near the cube's vertical axis: the open fingers straddle it
    STRADDLE = 0.025  # ee this little above the cube's centre (and within GRASP_XY): the fingers are round it
    GRASP_Z = 0.01  # ee this little above the cube's centre: close
    TOP = 0.04  # ee this far above the cube's centre: clear of its top, where unopened fingers open first
    OPENED = 0.2  # closure below which the fingers are wide enough to come down round the cube
    GRIPPED = 0.45  # the fingers stop on the 4-4.25 cm cubes at closure 0.50-0.53 (a skewed grip lower)
    EMPTY = 0.8  # above this the fingers closed on nothing (fully closed reads 0.97)

    def _holding(self, env: ManipulationEnv) -> bool:
        """The cube between fingers closed on it, wherever the ee takes it."""
        # a little wider than where the fingers close (GRASP_XY, STRADDLE): a cube gripped there counts as held
        offset = env.object_pose(self.obj)[0] - env.ee_position()
        return (self.GRIPPED <= env.gripper_closure() <= self.EMPTY
                and np.linalg.norm(offset[:2]) < self.GRASP_XY + 0.005 and abs(offset[2]) < self.STRADDLE + 0.005)

    def _grasp(self, env: ManipulationEnv) -> np.ndarray:
        """Not holding the cube: over it, down round it with the fingers open, close on it; all the while turning
        the fingers square to its faces (a skewed grip stops below GRIPPED)."""
        cube, yaw = env.object_pose(self.obj)
        action = self._approach(env, cube)
        action[3] = np.clip(square_up(env, yaw) / env.action_spec.dtheta, -1.0, 1.0)
        return action

    def _approach(self, env: ManipulationEnv, cube: np.ndarray) -> np.ndarray:
        ee = env.ee_position()
        closure = env.gripper_closure()
        off, above = float(np.linalg.norm(ee[:2] - cube[:2])), float(ee[2] - cube[2])
        grasp = [cube[0], cube[1], cube[2] - 0.005]
        if off < self.GRASP_XY and above < self.STRADDLE:
            # once the fingers have begun to close they go on, should a knock lift the ee above GRASP_Z
            closing = above < self.GRASP_Z or closure > self.OPENED
            self.phase = 2 if closing else 1
            return self.toward(env, grasp, CLOSE if closing else OPEN)[0]
        if off < self.GRASP_XY + 0.5 * max(0.0, above - self.TOP):  # a cone over the cube: down, centring on the way
            self.phase = 1
            if closure > self.OPENED:  # the fingers would land on the cube: open with the fingertips over its top
                return self.toward(env, [cube[0], cube[1], cube[2] + max(above, self.TOP)], OPEN)[0]
            return self.toward(env, grasp, OPEN)[0]
        self.phase = 0
        if ee[2] < self.LOW:
            return self.toward(env, [ee[0], ee[1], HOVER], OPEN)[0]
        return self.toward(env, [cube[0], cube[1], HOVER], OPEN)[0]

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        if not self._holding(env):
            return self._grasp(env)
        self.phase = 3
        ee = env.ee_position()
        return self.toward(env, [ee[0], ee[1], self.LIFT_TO], CLOSE)[0]


class StackExpert(PickExpert):
    """Grasp cubeA as ``PickExpert`` does, carry it over cubeB, set it down and let go; Markovian too. ``phase``:
    0-2 the grasp, 3 rise with cubeA, 4 over cubeB, 5 down onto it, 6 open, 7 rise open."""

    obj = "cubeA"
    SEAT = 0.045  # cubeA's centre over cubeB's when it sits on it (half sizes 2 and 2.5 cm)
    PLACE_XY = 0.015  # cubeA this near cubeB's vertical axis: lower it onto cubeB
    RELEASE_XY = 0.02  # cubeA sitting on cubeB this near its axis: let go (it stands; cubeB's top is 5 cm across)
    OVER_TOP = 0.03  # cubeA this near cubeB's axis overlaps cubeB's top: it may slide there, not rise first
    PLACED = 0.008  # cubeA this little above its seat: it sits
    LEFT_XY = 0.025  # cubeA out of the hand this near cubeB's axis ...
    LEFT_Z = 0.035  # ... and its centre this far above cubeB's: it was set down on cubeB

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        cube, _ = env.object_pose(self.obj)
        base, _ = env.object_pose("cubeB")
        if self._holding(env):
            return self._place(env, cube, base)
        if np.linalg.norm(cube[:2] - base[:2]) < self.LEFT_XY and cube[2] > base[2] + self.LEFT_Z:
            return self._leave(env)
        return self._grasp(env)

    def _place(self, env: ManipulationEnv, cube: np.ndarray, base: np.ndarray) -> np.ndarray:
        ee = env.ee_position()
        shift = base[:2] - cube[:2]  # the ee's move that brings cubeA, where it sits in the hand, over cubeB
        off = float(np.linalg.norm(shift))
        seat = base[2] + self.SEAT
        sits = cube[2] < seat + self.PLACED
        if sits and off < self.RELEASE_XY:
            self.phase = 6  # open, holding cubeA centred while the fingers let go
            return self.toward(env, [*(ee[:2] + shift), ee[2]], OPEN)[0]
        if off < self.PLACE_XY or (off < self.OVER_TOP and cube[2] < seat + 0.02):
            self.phase = 5  # down onto cubeB, centring; aimed a little low, so it comes down briskly
            return self.toward(env, [*(ee[:2] + shift), ee[2] + seat - 0.005 - cube[2]], CLOSE)[0]
        if ee[2] < self.LOW:
            self.phase = 3
            return self.toward(env, [ee[0], ee[1], HOVER], CLOSE)[0]
        self.phase = 4
        return self.toward(env, [*(ee[:2] + shift), HOVER], CLOSE)[0]

    def _leave(self, env: ManipulationEnv) -> np.ndarray:
        """cubeA sits on cubeB, out of the hand: open fully where it is, then rise."""
        if env.gripper_closure() > self.OPENED:
            self.phase = 6
            return np.array([0.0, 0.0, 0.0, 0.0, OPEN])
        self.phase = 7
        ee = env.ee_position()
        return self.toward(env, [ee[0], ee[1], HOVER], OPEN)[0]


class DoorExpert(Expert):
    """Grasp the handle from above, then pull it along the arc about the hinge, turning the wrist with the door."""

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        handle = env.door_handle()
        ee = env.ee_position()
        if self.phase == 0:
            action, _ = self.toward(env, [handle[0], handle[1], handle[2] + 0.06], OPEN)
            if np.linalg.norm(ee[:2] - handle[:2]) < 0.008:
                self.phase = 1
            return action
        if self.phase == 1:
            action, dist = self.toward(env, handle, OPEN)
            if dist < 0.01:
                self.phase = 2
            return action
        if self.phase == 2:
            if self._hold(8):
                self.phase = 3
                self._grasp_yaw, self._grasp_hinge = env.ee_yaw(), env.door_hinge_angle()
            return np.array([0.0, 0.0, 0.0, 0.0, CLOSE])
        tangent = env.door_opening_direction()
        yaw_error = self._grasp_yaw + (env.door_hinge_angle() - self._grasp_hinge) - env.ee_yaw()
        yaw_error = (yaw_error + np.pi) % (2 * np.pi) - np.pi
        return np.array([*tangent[:2], 0.0, yaw_error / env.action_spec.dtheta, CLOSE])


EXPERTS = {"reach": ReachExpert, "push": PushExpert, "lift": PickExpert, "stack": StackExpert, "door": DoorExpert}


def make_expert(task: str, env: ManipulationEnv, noise: float = 0.0, seed: int | None = None) -> Expert:
    check_task(task)
    if getattr(env, "task", task) != task:
        raise ValueError(f"expert for {task!r} given an env of task {env.task!r}")
    return EXPERTS[task](env, noise, seed)
