"""Scripted experts: small state machines over the env's privileged state (object poses, ee position).

``act(obs, env)`` returns a [-1, 1] action; ``noise`` adds Gaussian noise of that std to every entry
(then clipped), for datasets with imperfect demonstrations.
"""

from __future__ import annotations

import numpy as np

from sim.env import ManipulationEnv, check_task

OPEN, CLOSE = -1.0, 1.0
HOVER = 0.10  # metres above an object before descending


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


class PickExpert(Expert):
    """Lift: grasp the cube from above and raise it. Stack subclass places it on the other cube."""

    obj = "cube"
    LIFT_TO = 0.15

    def _grasp(self, env: ManipulationEnv) -> np.ndarray | None:
        pos, _ = env.object_pose(self.obj)
        if self.phase == 0:
            action, _ = self.toward(env, [pos[0], pos[1], HOVER], OPEN)
            if np.linalg.norm(env.ee_position()[:2] - pos[:2]) < 0.006:
                self.phase = 1
            return action
        if self.phase == 1:
            action, dist = self.toward(env, [pos[0], pos[1], pos[2] - 0.005], OPEN)
            if dist < 0.01:
                self.phase = 2
            return action
        if self.phase == 2:
            if self._hold(8):
                self.phase = 3
            return np.array([0.0, 0.0, 0.0, 0.0, CLOSE])
        return None

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        action = self._grasp(env)
        if action is not None:
            return action
        ee = env.ee_position()
        return self.toward(env, [ee[0], ee[1], self.LIFT_TO], CLOSE)[0]


class StackExpert(PickExpert):
    obj = "cubeA"

    def _act(self, env: ManipulationEnv) -> np.ndarray:
        action = self._grasp(env)
        if action is not None:
            return action
        base, _ = env.object_pose("cubeB")
        ee = env.ee_position()
        above = [base[0], base[1], HOVER]
        if self.phase == 3:
            action, _ = self.toward(env, [ee[0], ee[1], HOVER], CLOSE)
            if ee[2] > HOVER - 0.02:
                self.phase = 4
            return action
        if self.phase == 4:
            action, _ = self.toward(env, above, CLOSE)
            if np.linalg.norm(ee[:2] - base[:2]) < 0.006:
                self.phase = 5
            return action
        if self.phase == 5:  # down until cubeA (2 cm half size) sits on cubeB (2.5 cm half size)
            action, dist = self.toward(env, [base[0], base[1], base[2] + 0.025 + 0.02 + 0.005], CLOSE)
            if dist < 0.008:
                self.phase = 6
            return action
        if self.phase == 6:
            if self._hold(8):
                self.phase = 7
            return np.array([0.0, 0.0, 0.0, 0.0, OPEN])
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
