"""The safety filter between the policy and the arm: NaN guard, step limits, workspace box, gripper rules.

``filter_batch`` is pure and vectorised (N actions at once) so property tests can push 1e5 random policy
outputs through the exact code the control loop runs; ``SafetyFilter.__call__`` wraps it for one action
and keeps the gripper's debounce state between periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_stack.devices import ArmCommand, ArmState
from robot_stack.specs import ActionSpec, WorkspaceBox


@dataclass
class SafetyConfig:
    """Limits applied to every command. ``margin`` shrinks the workspace box on every side (metres)."""

    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    margin: float = 0.01
    max_step: float = 0.05          # metres per control period (Euclidean norm of dpos)
    max_dyaw: float = math.pi / 8   # radians per control period
    gripper_min_periods: int = 2    # a gripper toggle is refused until the last state held this many periods
    gripper_deadband: float = 0.1   # |gripper| below this keeps the current gripper command

    def __post_init__(self) -> None:
        if self.max_step <= 0 or self.max_dyaw < 0 or self.margin < 0 or self.gripper_min_periods < 0:
            raise ValueError("safety limits must be positive (max_step > 0, max_dyaw >= 0, margin >= 0)")
        ws = self.workspace
        if 2 * self.margin >= min(ws.x_max - ws.x_min, ws.y_max - ws.y_min, ws.z_max - ws.z_min):
            raise ValueError(f"safety margin {self.margin} m leaves no workspace")

    @property
    def low(self) -> np.ndarray:
        return self.workspace.low + self.margin

    @property
    def high(self) -> np.ndarray:
        return self.workspace.high - self.margin


@dataclass
class SafetyBatch:
    """Filtered commands for N actions, plus what the filter did to each."""

    dpos: np.ndarray        # [N, 3] metres
    dyaw: np.ndarray        # [N] radians
    gripper: np.ndarray     # [N] -1 open / +1 close
    nan: np.ndarray         # [N] bool: the action had NaN/inf and became a hold
    clipped: np.ndarray     # [N] bool: step, box or range limits changed the command


def filter_batch(cfg: SafetyConfig, action_spec: ActionSpec, actions: np.ndarray, ee_pos: np.ndarray,
                 gripper_cmd: np.ndarray, toggle_allowed: np.ndarray | bool = True) -> SafetyBatch:
    """Vectorised filter. ``actions`` [N, 5] raw policy output; ``ee_pos`` [N, 3]; ``gripper_cmd`` [N] current.

    Guarantees for every row: |dpos| <= max_step, |dyaw| <= max_dyaw, and ee_pos + dpos inside the shrunken
    box whenever ee_pos is inside it (from outside, the command moves towards the box). Rows with a
    non-finite action or position become a hold: zero motion, gripper unchanged.
    """
    a = np.asarray(actions, dtype=np.float64).reshape(-1, action_spec.dim)
    ee = np.broadcast_to(np.asarray(ee_pos, dtype=np.float64), (len(a), 3))
    grip_now = np.broadcast_to(np.asarray(gripper_cmd, dtype=np.float64), (len(a),))
    bad = ~np.all(np.isfinite(a), axis=1) | ~np.all(np.isfinite(ee), axis=1)
    a = np.where(bad[:, None], 0.0, a)
    ee_safe = np.where(bad[:, None], 0.0, ee)
    a_clip = np.clip(a, -1.0, 1.0)
    metric = action_spec.to_metric(a_clip)
    want = metric[:, :3]
    target = np.clip(ee_safe + want, cfg.low, cfg.high)
    dpos = target - ee_safe
    norm = np.linalg.norm(dpos, axis=1)
    scale = np.minimum(1.0, cfg.max_step / np.maximum(norm, 1e-12))
    dpos = dpos * scale[:, None]
    dyaw = np.clip(metric[:, 3], -cfg.max_dyaw, cfg.max_dyaw)
    gripper = _gripper_rule(cfg, a_clip[:, 4], grip_now, toggle_allowed)
    dpos[bad] = 0.0
    dyaw[bad] = 0.0
    gripper[bad] = grip_now[bad]
    clipped = (np.any(a_clip != a, axis=1) | np.any(np.abs(dpos - want) > 1e-12, axis=1)
               | (np.abs(dyaw - metric[:, 3]) > 1e-12)) & ~bad
    return SafetyBatch(dpos, dyaw, gripper, bad, clipped)


def _gripper_rule(cfg: SafetyConfig, raw: np.ndarray, current: np.ndarray, allowed: np.ndarray | bool) -> np.ndarray:
    """Binary gripper: sign of the action outside the deadband; a toggle only when ``allowed``."""
    wanted = np.where(raw > cfg.gripper_deadband, 1.0, np.where(raw < -cfg.gripper_deadband, -1.0, current))
    return np.where(np.asarray(allowed, dtype=bool), wanted, current)


@dataclass
class SafetyReport:
    nan: bool
    clipped: bool
    gripper_refused: bool


class SafetyFilter:
    """Stateful single-arm wrapper around ``filter_batch`` (tracks the gripper's last toggle)."""

    def __init__(self, cfg: SafetyConfig, action_spec: ActionSpec) -> None:
        self.cfg = cfg
        self.action_spec = action_spec
        self.gripper_cmd = -1.0
        self.periods_since_toggle = cfg.gripper_min_periods

    def reset(self, gripper_cmd: float = -1.0) -> None:
        self.gripper_cmd = gripper_cmd
        self.periods_since_toggle = self.cfg.gripper_min_periods

    def __call__(self, action: np.ndarray, state: ArmState) -> tuple[ArmCommand, SafetyReport]:
        allowed = self.periods_since_toggle >= self.cfg.gripper_min_periods
        out = filter_batch(self.cfg, self.action_spec, np.asarray(action)[None], np.asarray(state.ee_pos)[None],
                           np.array([self.gripper_cmd]), allowed)
        grip = float(out.gripper[0])
        refused = False
        if not out.nan[0] and not allowed:
            raw = np.clip(np.asarray(action, dtype=np.float64)[4:5], -1.0, 1.0)
            refused = bool(_gripper_rule(self.cfg, raw, np.array([self.gripper_cmd]), True)[0] != grip)
        self.periods_since_toggle = 1 if grip != self.gripper_cmd else self.periods_since_toggle + 1
        self.gripper_cmd = grip
        report = SafetyReport(bool(out.nan[0]), bool(out.clipped[0]), refused)
        return ArmCommand(dpos=out.dpos[0].copy(), dyaw=float(out.dyaw[0]), gripper=grip), report

    def hold_command(self) -> ArmCommand:
        """Zero motion with the gripper kept as it is."""
        self.periods_since_toggle += 1
        return ArmCommand(dpos=np.zeros(3), dyaw=0.0, gripper=self.gripper_cmd)

    def normalized(self, command: ArmCommand) -> np.ndarray:
        """A command back in the policy's [-1, 1] action units (what the recorder stores as executed)."""
        spec = self.action_spec
        dtheta = command.dyaw / spec.dtheta if spec.dtheta > 0 else 0.0
        return np.array([*(np.asarray(command.dpos) / spec.dpos), dtheta, command.gripper], dtype=np.float32)
