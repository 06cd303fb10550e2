"""A GL-free, physics-free ``reach`` toy task with the real observation and action spec.

The gripper moves over a square workspace seen from above; a target blob lies on the table. The
observation is the same as the robosuite tasks' (``{"heightmap": float32[1, S, S], "gripper":
float32[2]}``) so the whole training path (networks, SAC, replay, export) runs on it in
milliseconds. Gripper and target start inside a disc around the workspace centre and the gripper
is kept inside the inscribed disc, so the task is exactly invariant under rotations about the
centre (up to pixel interpolation) and under the x mirror.

Success: the gripper's (x, y) within ``success_radius`` metres of the target. ``reward="sparse"``
pays 1 on success, ``"shaped"`` also pays the decrease of the distance (in workspace half-widths).

``variant="action_bias"`` breaks the symmetry: a miscalibrated arm that executes the (clipped) command plus a
constant world-frame offset ``action_bias`` = (bx, by), in action units (default ``DEFAULT_ACTION_BIAS``).
Why this breaks C4 and what the exact family loses:

* The bias-compensating action is ``d - b`` (``d`` the displacement to the target). For a rotation g,
  equivariance forces pi(gs) = g pi(s) = g d - g b, while the task needs g d - b. Fitting d - b over a
  rotation-invariant state distribution, the best exactly equivariant policy is the group average:
  d - mean_g(g b) = d, as the average of a fixed vector over C4 is 0. It does not compensate at all; a
  relaxed policy (w_l(h) not uniform) can carry a world-fixed offset. The x mirror is broken as well.
* Uncompensated, a straight-to-target step lands ``|b| * dpos`` metres from the target; with dpos 0.05 m
  and a 0.03 m success radius that misses only when |b| > 0.6. The default (0.6, 0.6) (|b| = 0.85) lands
  0.042 m away, 1.4 radii: a clear miss, not a pixel-rounding one.
* The expert must still reach within ``max_steps`` = 10: against the bias an axis moves at most
  (1 - |b_i|) * dpos = 0.02 m a step, enough for the per-axis distances of the 0.8 half-width disc
  (0.12 m radius) in most episodes; |b_i| >= 1 would leave an axis that cannot move one way and is refused.
  A diagonal bias splits the slow-down evenly over both axes.
* What the exact family can still do: feedback. After landing at -b dpos from the target, the equivariant
  action "twice the displacement" (a radial gain of 2) lands on it, so an exact policy is not locked out;
  it needs an extra step and a behaviour the compensating expert never demonstrates, whereas the relaxed
  family can copy the expert's compensation.
* Rotated copies of transitions (``sac.rotated_copies``) and rotation augmentation (``cnn_aug``) assume the
  symmetry: on this variant a rotated transition is not one the arm can make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from robot_stack.config import check_choice
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, SpecError, WorkspaceBox

REWARDS = ("sparse", "shaped")
VARIANTS = ("none", "action_bias")
DEFAULT_ACTION_BIAS = (0.6, 0.6)  # action units; see the module docstring for why


@dataclass(frozen=True)
class ToyReachConfig:
    heightmap_size: int = 64
    max_steps: int = 10
    success_radius: float = 0.03  # metres
    reward: str = "sparse"
    dpos: float = 0.05  # metres per unit action
    target_height: float = 0.04  # metres, the blob's height on the table
    target_radius: float = 0.02  # metres
    variant: str = "none"  # "none" (C4- and mirror-symmetric) or "action_bias"
    action_bias: tuple[float, float] | None = None  # (bx, by) action units, variant action_bias only

    def __post_init__(self) -> None:
        check_choice("variant", self.variant, VARIANTS)
        check_choice("reward", self.reward, REWARDS)
        if self.action_bias is None:
            return
        if self.variant != "action_bias":
            raise SpecError(f"toy_reach: action_bias {self.action_bias!r} needs variant 'action_bias' "
                            f"(variant {self.variant!r} is the unbiased task)")
        object.__setattr__(self, "action_bias", _check_bias(self.action_bias))

    @property
    def bias(self) -> np.ndarray:
        """The executed offset (bx, by) in action units; zero unless the variant is action_bias."""
        if self.variant != "action_bias":
            return np.zeros(2)
        return np.array(self.action_bias if self.action_bias is not None else DEFAULT_ACTION_BIAS, dtype=float)


def _check_bias(value: Any) -> tuple[float, float]:
    try:
        bias = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        bias = ()
    if len(bias) != 2 or not all(np.isfinite(b) and abs(b) < 1.0 for b in bias):
        raise SpecError(f"toy_reach: action_bias {value!r} must be two finite numbers [bx, by] with |b| < 1 "
                        f"(action units; at |b| >= 1 the arm cannot move against the bias on that axis)")
    return bias[0], bias[1]


class ToyReachEnv(gym.Env):
    """Move the gripper over the target blob; see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, **cfg: Any) -> None:
        valid = set(ToyReachConfig.__dataclass_fields__)
        unknown = sorted(set(cfg) - valid)
        if unknown:
            raise SpecError(f"toy_reach: unknown option(s) {unknown}; valid options: {sorted(valid)}")
        self.cfg = ToyReachConfig(**cfg)
        self.hm_spec = HeightmapSpec(self.cfg.heightmap_size, WorkspaceBox())
        self.obs_spec = ObservationSpec.create(self.hm_spec)
        self.action_spec = ActionSpec(dpos=self.cfg.dpos)
        size = self.cfg.heightmap_size
        self.observation_space = gym.spaces.Dict({
            "heightmap": gym.spaces.Box(0.0, self.hm_spec.max_height, (1, size, size), np.float32),
            "gripper": gym.spaces.Box(0.0, 1.0, (2,), np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_spec.dim,), np.float32)
        self._half = (self.hm_spec.workspace.x_max - self.hm_spec.workspace.x_min) / 2
        self._bias = self.cfg.bias
        self._bias_step = self._bias * self.cfg.dpos / self._half  # in half-widths
        centers = (np.arange(size) + 0.5) / size * 2 - 1  # cell centres in half-widths, [-1, 1]
        self._grid_x, self._grid_y = np.meshgrid(centers, centers)  # [row, col]: col ~ +x, row ~ +y
        self._pos = np.zeros(2)
        self._target = np.zeros(2)
        self._z = 0.5
        self._closed = 0.0
        self._t = 0

    @property
    def policy_spec_parts(self) -> tuple[ObservationSpec, ActionSpec, HeightmapSpec]:
        return self.obs_spec, self.action_spec, self.hm_spec

    @property
    def gripper_xy(self) -> np.ndarray:
        """Gripper position in workspace half-widths (centre 0, edges +-1)."""
        return self._pos.copy()

    @property
    def target_xy(self) -> np.ndarray:
        return self._target.copy()

    @property
    def action_bias(self) -> np.ndarray:
        """The world-frame offset (bx, by) the arm adds to every executed command, in action units."""
        return self._bias.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = self._sample_in_disc(0.8)
        self._target = self._sample_in_disc(0.8)
        while self._distance() < 2 * self.cfg.success_radius / self._half:
            self._target = self._sample_in_disc(0.8)
        self._z = float(self.np_random.uniform(0.3, 0.7))
        self._closed = 0.0
        self._t = 0
        return self._obs(), {"success": False, "clipped": 0}

    def step(self, action):
        clipped_action, clipped = self.action_spec.clip(action)
        before = self._distance()
        # The bias is its own term so the unbiased task keeps today's float32 arithmetic bit for bit.
        self._pos = self._pos + clipped_action[:2] * self.cfg.dpos / self._half + self._bias_step
        norm = np.linalg.norm(self._pos)
        if norm > 1.0:
            self._pos = self._pos / norm
        self._z = float(np.clip(self._z + clipped_action[2] * self.cfg.dpos / self.hm_spec.max_height, 0.0, 1.0))
        self._closed = 1.0 if clipped_action[4] > 0 else 0.0
        self._t += 1
        dist = self._distance()
        success = dist * self._half <= self.cfg.success_radius
        reward = float(success)
        if self.cfg.reward == "shaped":
            reward += float(before - dist)
        truncated = self._t >= self.cfg.max_steps and not success
        return self._obs(), reward, bool(success), bool(truncated), {"success": bool(success), "clipped": clipped}

    def _distance(self) -> float:
        return float(np.linalg.norm(self._pos - self._target))

    def _sample_in_disc(self, radius: float) -> np.ndarray:
        r = radius * np.sqrt(self.np_random.uniform())
        phi = self.np_random.uniform(0, 2 * np.pi)
        return np.array([r * np.cos(phi), r * np.sin(phi)])

    def _obs(self) -> dict[str, np.ndarray]:
        cell = 2.0 / self.cfg.heightmap_size
        target_r = max(self.cfg.target_radius / self._half, cell)
        d_target = np.hypot(self._grid_x - self._target[0], self._grid_y - self._target[1])
        hm = np.where(d_target <= target_r, self.cfg.target_height, 0.0)
        # The gripper's footprint: a ring at its height above the table (the design's "gripper drawn in").
        d_grip = np.hypot(self._grid_x - self._pos[0], self._grid_y - self._pos[1])
        ring = (d_grip <= max(0.12, 2.5 * cell)) & (d_grip >= max(0.06, 1.2 * cell))
        hm = np.maximum(hm, np.where(ring, self._z * self.hm_spec.max_height, 0.0))
        gripper = np.array([self._closed, self._z], dtype=np.float32)
        return {"heightmap": hm[None].astype(np.float32), "gripper": gripper}


class ToyReachExpert:
    """Moves straight to the target (with optional Gaussian noise on the action), subtracting the arm's
    ``action_bias`` from its command as a demonstrator who knows the miscalibration would
    (``compensate=False`` leaves it in)."""

    def __init__(self, env: ToyReachEnv, noise: float = 0.0, seed: int | None = None, compensate: bool = True) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.env = env
        self.compensate = compensate

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray], env: ToyReachEnv | None = None) -> np.ndarray:
        return self.act_and_label(obs, env)[0]

    def act_and_label(self, obs: dict[str, np.ndarray], env: ToyReachEnv | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(the action with the expert's noise, the noise-free one), as ``sim.experts.Expert.act_and_label``."""
        env = env or self.env
        base = env.unwrapped if hasattr(env, "unwrapped") else env
        delta = (base.target_xy - base.gripper_xy) * base._half / base.cfg.dpos
        if self.compensate:
            delta = delta - base.action_bias
        clean = np.zeros(5, dtype=np.float32)
        clean[:2] = np.clip(delta, -1.0, 1.0)
        noisy = clean + self.noise * self.rng.standard_normal(5).astype(np.float32)
        return np.clip(noisy, -1.0, 1.0), clean


def make_toy_env(**cfg: Any) -> ToyReachEnv:
    return ToyReachEnv(**cfg)


def make_toy_expert(env: ToyReachEnv, noise: float = 0.0, seed: int | None = None,
                    compensate: bool = True) -> ToyReachExpert:
    return ToyReachExpert(env, noise, seed, compensate)
