"""Symmetry-breaking variants, selected by ``SimConfig.variant``, each with a strength in [0, 1]
(``SimConfig.variant_strength``): 0 is the symmetric task, 1 the strongest setting, and the physical quantity in
between is linear in the strength (``RANGES``). Left out (None), the strength is the variant's default
(``DEFAULT_STRENGTH``): the physical value every variant had before strengths existed, so launch files and results
that name a variant alone mean what they meant.

Each breaks the C4 symmetry of a task in one way a real cell does; docs/sim.md lists the measured gaps
(``sim.symmetry``): how far the environment is from symmetric, and how far the scripted expert's policy is from its
own group average.

``world_goal`` (push and reach, the tasks with a visible goal pad): the true goal lies ``s * 6 cm`` from the
visible pad towards world +x, and nothing in the heightmap shows it. The push expert (privileged state) pushes the
cube there, the reach expert hovers over it. Why its optimal policy is not equivariant, and what that costs:

* The goal offset d = s * (6 cm, 0) is fixed in the world. Turning a layout by g turns the pad but not d, so the
  expert's action at g.s is not g applied to its action at s; the group average of the expert (the L2-best
  equivariant fit of it on a rotation-invariant start distribution) aims at the pad + mean_g(g^-1 d) = the pad.
* Success is the cube passing within 3 cm of pad + d (the episode ends there). An exactly C4-equivariant policy
  moves the cube, over the orbit {L, gL, g^2 L, g^3 L} of a layout L, along g^k of one path relative to the pad,
  so it succeeds on the turns whose goals pad + g^-k d that one path passes. A path that *ends* in one goal ends in
  no other once s * 6 cm * sqrt(2) > 2 * 3 cm (s > 0.71): at most 1/4 of the layouts for a policy that pushes to a
  point and stops. A path may pass several goals on its way, though, so the success of an equivariant policy is
  bounded only by the share of the four goals its paths pass (``sim.symmetry.rotated_goal_passes``, ``robot-stack
  evaluate --rotated-goals``); at s <= 0.5 the pad itself is within 3 cm of every goal.
* The offset is a direction, not a place, so it needs no landmark: the gripper-centred view keeps the world axes
  (its image does not turn with the gripper), so a non-equivariant policy can read "+x" in either view.
* Layouts keep the cube 8 cm from both the pad and the true goal (no episode starts solved); the second condition
  is the only part of the start distribution that is not rotation-invariant.

``wall`` (every task): a 5 cm tall, 2 cm thick wall along the +y side of the workspace, its inner face 12.5 cm from
the centre (the cubes start within 11.1 cm), centred on x; its length is ``s * 30 cm`` (the workspace's width at
1). It is visible and fixed: it blocks the arm and cubes near +y and not near -x, -y or +x. The experts do not know
about it (an expert lining up behind a cube near the wall presses into it).

The others, as strength 0 -> 1: ``actuator_bias`` +x commands move 1 -> 1.5x as far, -x commands 1 -> 0.5x;
``gravity_tilt`` 0 -> 20 deg off vertical towards +x; ``table_friction`` a patch over the +x half of the workspace
with sliding friction 1 (the table's; no patch is built at 0) -> 5; ``placement`` objects start in a sector of the
placement disc about +x whose half-angle goes 180 deg (the whole disc) -> 90 deg (the +x half);
``base_in_view`` the arm's base moves 0 -> 25 cm towards the workspace, its base links visible to the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_stack.config import ConfigError

VARIANTS = ("none", "actuator_bias", "gravity_tilt", "table_friction", "placement", "base_in_view", "world_goal",
            "wall")

# variant: (physical value at strength 0, at strength 1, unit)
RANGES = {
    "none": (0.0, 0.0, ""),
    "actuator_bias": (0.0, 0.5, "fraction"),  # +x moves (1 + b)x, -x (1 - b)x
    "gravity_tilt": (0.0, 20.0, "deg"),
    "table_friction": (1.0, 5.0, "mu"),  # robosuite's table has sliding friction 1
    "placement": (math.pi, math.pi / 2, "rad"),  # half-angle of the start sector about +x
    "base_in_view": (0.0, 0.25, "m"),
    "world_goal": (0.0, 0.06, "m"),  # true goal - visible pad, along +x
    "wall": (0.0, 0.30, "m"),  # wall length
}

# Strength when variant_strength is left out: today's physical defaults (actuator_bias 0.3, 10 deg, mu 3, the +x
# half, 0.2 m); the new variants at their strongest.
DEFAULT_STRENGTH = {"none": 0.0, "actuator_bias": 0.6, "gravity_tilt": 0.5, "table_friction": 0.5, "placement": 1.0,
                    "base_in_view": 0.8, "world_goal": 1.0, "wall": 1.0}

# world_goal needs a visible goal pad to offset
GOAL_TASKS = ("push", "reach")

WALL_HEIGHT = 0.05
WALL_THICKNESS = 0.02
WALL_INNER_Y = 0.125  # metres from the workspace centre to the wall's inner face, along +y


def check_strength(key: str, value: float | None) -> None:
    """A ConfigError naming ``key`` unless ``value`` is None or a number in [0, 1]."""
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{key}: {value!r} is not in [0, 1] (0 = symmetric, 1 = the strongest setting; leave "
                          f"it out for the variant's default)")


def check_task(variant: str, task: str) -> None:
    """A ConfigError naming the key ``variant`` when ``variant`` cannot be built on ``task``."""
    if variant == "world_goal" and task not in GOAL_TASKS:
        raise ConfigError(f"variant: 'world_goal' offsets a visible goal pad; tasks with one: {list(GOAL_TASKS)}, "
                          f"not {task!r}")


@dataclass(frozen=True)
class Variant:
    name: str
    strength: float  # in [0, 1]

    @classmethod
    def create(cls, name: str, strength: float | None = None) -> Variant:
        if name not in VARIANTS:
            raise ConfigError(f"variant: {name!r} is not one of {list(VARIANTS)}")
        check_strength("variant_strength", strength)
        return cls(name, DEFAULT_STRENGTH[name] if strength is None else float(strength))

    @property
    def value(self) -> float:
        """The physical quantity at this strength, in ``RANGES[name]``'s unit."""
        low, high, _ = RANGES[self.name]
        return low + self.strength * (high - low)

    @property
    def active(self) -> bool:
        """False when the variant changes nothing (``none``, or strength 0)."""
        return self.name != "none" and self.strength > 0.0

    def bias_dx(self, dx: float) -> float:
        if self.name != "actuator_bias":
            return dx
        return dx * (1.0 + self.value) if dx > 0 else dx * (1.0 - self.value)

    def goal_offset(self) -> np.ndarray:
        """Metres (x, y) from the visible goal pad to the true goal (zero unless world_goal)."""
        return np.array([self.value if self.name == "world_goal" else 0.0, 0.0])

    def placement_half_angle(self) -> float:
        return self.value if self.name == "placement" else math.pi
