"""How far a task is from C4-symmetric, and how far its scripted expert's policy is from equivariant.

**Environment gap** (``measure_gap``): run the task's expert from a layout, replay its actions rotated from the
rotated layout, and compare the rotated trajectory with the one obtained. Gaps are in metres (ee and cube positions,
max over the episode) and in reward (summed absolute difference). ``measure_drop_gap`` is a second, contact-free
transition: a cube let go in the air, from a point and from its rotated copy (the variant that tilts gravity shows
here; the arm's controller hides it in the push).

**Expert-policy gap** (``expert_gap``): how far the expert's policy is from its own group average. The experts act
on privileged state (object and ee positions), so they can be asked what they would do in the turned scene without
simulating it: ``RotatedScene`` shows an expert the state turned by g about the workspace centre, except what is
fixed to the world and unseen (the world_goal offset), and ``GroupAveragedExpert`` acts with
``a_bar(s) = mean_g g^-1 E_g(g.s)``, one expert (with its own phase) per group element. On a rotation-invariant
start distribution, ``a_bar`` is the L2 projection of the expert onto equivariant policies: the best fit an
exactly equivariant policy can make of the expert's data. The gap is the mean |a(s) - a_bar(s)| (L2 over the five
action entries, in action units) over the states the expert visits; the group-averaged expert's own success rate
(``GroupAveragedExpert`` driving) is measured beside it, on the same layouts.

What it does not see: it assumes the observation of g.s is the turned observation of s. Where the heightmap shows
something fixed to the world (the wall, the arm's base in view, the friction patch), an exactly equivariant network
can read the scene's orientation from it and the true constraint is weaker; the environment gap's heightmap figure
says how much the start heightmaps differ. Physics variants (actuator_bias, gravity_tilt, table_friction) change
the transitions, not the expert's choice at a state: their expert gap is 0 and their break shows in the environment
gap only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_stack.config import ConfigError
from robot_stack.symmetry import Group, GroupElement, act_on_action, act_on_image, act_on_points


@dataclass
class SymmetryGap:
    variant: str
    ee_gap_m: float
    cube_gap_m: float
    reward_gap: float
    heightmap_gap_m: float  # mean |g.hm(s) - hm(g.s)| at the start state


# the free object whose path the environment gap follows (None: only the ee moves)
TRACKED = {"push": "cube", "lift": "cube", "stack": "cubeA", "reach": None}


def check_gap_task(task: str) -> None:
    if task not in TRACKED:
        raise ConfigError(f"symmetry gaps need a task whose layout turns with the scene and whose expert reads only "
                         f"positions: {list(TRACKED)}, not {task!r}")


def _object_xy(env) -> np.ndarray:
    name = TRACKED[env.task]
    return np.zeros(2) if name is None else env.object_pose(name)[0][:2].copy()


def _rollout(env, layout, actions=None, expert=None, steps: int = 0):
    """Positions of ee and tracked object after every step, rewards, the actions taken, the first heightmap."""
    obs, _ = env.reset(options={"layout": layout})
    first_hm = obs["heightmap"][0].copy()
    ee, cube, rewards, taken = [], [], [], []
    for t in range(len(actions) if actions is not None else steps):
        action = actions[t] if actions is not None else expert.act(obs, env)
        obs, reward, _, _, _ = env.step(action)
        taken.append(action)
        ee.append(env.ee_position()[:2].copy())
        cube.append(_object_xy(env))
        rewards.append(reward)
    return np.array(ee), np.array(cube), np.array(rewards), np.array(taken), first_hm


def rotate_layout(layout: dict, g, center) -> dict:
    out = {}
    for name, (x, y, yaw) in layout.items():
        px, py = act_on_points(g, np.array([x, y]), tuple(center))
        out[name] = (float(px), float(py), float(yaw))  # cube yaw 0 is C4-invariant (a cube), the goal is a disc
    return out


def measure_gap(env, layout: dict, k: int = 1, steps: int = 30) -> SymmetryGap:
    """Gap between rolling out g.(expert actions) from g.layout and g applied to the original rollout."""
    import sim

    check_gap_task(env.task)
    g = Group.parse("C4").element(k)
    expert = sim.make_expert(env.task, env)
    expert.reset()
    env.horizon = max(env.horizon, steps)
    ee, cube, rewards, actions, hm = _rollout(env, layout, expert=expert, steps=steps)
    rot_actions = act_on_action(g, actions)
    ee_r, cube_r, rewards_r, _, hm_r = _rollout(env, rotate_layout(layout, g, env.center), actions=rot_actions)
    return SymmetryGap(
        variant=env.variant.name,
        ee_gap_m=float(np.max(np.linalg.norm(act_on_points(g, ee, tuple(env.center)) - ee_r, axis=1))),
        cube_gap_m=float(np.max(np.linalg.norm(act_on_points(g, cube, tuple(env.center)) - cube_r, axis=1))),
        reward_gap=float(np.sum(np.abs(rewards - rewards_r))),
        heightmap_gap_m=float(np.mean(np.abs(act_on_image(g, hm) - hm_r))))


def measure_drop_gap(env, xy: tuple[float, float], height: float = 0.1, k: int = 1, steps: int = 10) -> float:
    """Metres between g.(where a cube dropped from ``height`` above ``xy`` comes to rest) and where it comes to
    rest when dropped above g.xy, the arm holding still (a no-op action), g the C4 rotation by k * 90 deg."""
    g = Group.parse("C4").element(k)
    rests = []
    for start in (np.asarray(xy, dtype=np.float64), act_on_points(g, np.asarray(xy, dtype=np.float64),
                                                                    tuple(env.center))):
        env.reset(options={"layout": {"cube": (float(start[0]), float(start[1]), 0.0)}})
        env.raise_object("cube", height)
        for _ in range(steps):
            env.apply_metric(np.zeros(3), 0.0, -1.0)
        rests.append(env.object_pose("cube")[0][:2].copy())
    return float(np.linalg.norm(act_on_points(g, rests[0], tuple(env.center)) - rests[1]))


def inverse(g: GroupElement) -> GroupElement:
    """A mirror (with any rotation) is its own inverse; a rotation by k undoes by n - k."""
    return g if g.flip else GroupElement(0, (-g.k) % g.n, g.n)


class RotatedScene:
    """The state an expert reads (``object_pose``, ``ee_position``, ``ee_yaw``, ``gripper_closure``, ``goal_position``,
    ``reach_target``), turned by ``g`` about the workspace centre; the world_goal offset is fixed to the world and
    stays as it is."""

    def __init__(self, env, g: GroupElement) -> None:
        self.env, self.g = env, g
        self.task, self.action_spec = env.task, env.action_spec

    def _turn(self, pos: np.ndarray) -> np.ndarray:
        out = np.array(pos, dtype=np.float64)
        out[:2] = act_on_points(self.g, out[:2], tuple(self.env.center))
        return out

    def object_pose(self, name: str) -> tuple[np.ndarray, float]:
        pos, yaw = self.env.object_pose(name)
        return self._turn(pos), (np.pi - yaw if self.g.flip else yaw) + self.g.angle

    def ee_position(self) -> np.ndarray:
        return self._turn(self.env.ee_position())

    def ee_yaw(self) -> float:
        yaw = self.env.ee_yaw()
        return (np.pi - yaw if self.g.flip else yaw) + self.g.angle

    def gripper_closure(self) -> float:
        return self.env.gripper_closure()  # a turn about the vertical leaves it as it is

    def goal_position(self) -> np.ndarray:
        offset = np.array([*self.env.variant.goal_offset(), 0.0])
        return self._turn(self.env.goal_position() - offset) + offset

    def reach_target(self) -> np.ndarray:
        from sim.env import REACH_HEIGHT

        return np.array([*self.goal_position()[:2], REACH_HEIGHT])


class GroupAveragedExpert:
    """``a_bar(s) = mean_g g^-1 E_g(g.s)``: one scripted expert per element g of ``group``, each shown the scene
    turned by g and keeping its own phase; ``actions`` gives every g^-1 E_g(g.s), the identity's first."""

    def __init__(self, env, group: str = "C4") -> None:
        import sim

        check_gap_task(env.task)
        self.env = env
        self.elements = Group.parse(group).elements
        self.experts = [sim.make_expert(env.task, env) for _ in self.elements]

    def reset(self) -> None:
        for expert in self.experts:
            expert.reset()

    def actions(self) -> np.ndarray:
        return np.stack([act_on_action(inverse(g), e.act({}, RotatedScene(self.env, g)))
                         for g, e in zip(self.elements, self.experts, strict=True)])

    def act(self, obs: dict, env=None) -> np.ndarray:
        return self.actions().mean(axis=0)


@dataclass
class ExpertGap:
    gap: float  # mean over visited states of |a(s) - a_bar(s)|, action units (L2 over the 5 entries)
    expert_success: float  # the expert driving
    averaged_success: float  # the group-averaged expert driving, same layouts
    states: int


def expert_gap(env, episodes: int, seed: int = 0, group: str = "C4") -> ExpertGap:
    """The expert's distance from its group average on the states it visits (episodes reset with seed, seed + 1,
    ...), and the success rates of both policies on those layouts."""
    averaged = GroupAveragedExpert(env, group)
    gaps: list[float] = []
    own = _success_rate(env, averaged, episodes, seed, lambda a: a[0], gaps)
    mean = _success_rate(env, averaged, episodes, seed, lambda a: a.mean(axis=0), None)
    return ExpertGap(float(np.mean(gaps)), own, mean, len(gaps))


def _success_rate(env, averaged: GroupAveragedExpert, episodes: int, seed: int,
                  pick: Callable[[np.ndarray], np.ndarray], gaps: list[float] | None) -> float:
    """Success rate with ``pick(actions)`` driving (``actions``: every g^-1 E_g(g.s)); appends each state's
    |a - a_bar| to ``gaps`` when given."""
    wins = 0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        averaged.reset()
        info = {"success": False}
        for _ in range(env.horizon):
            actions = averaged.actions()
            if gaps is not None:
                gaps.append(float(np.linalg.norm(actions[0] - actions.mean(axis=0))))
            _, _, terminated, truncated, info = env.step(pick(actions))
            if terminated or truncated:
                break
        wins += bool(info["success"])
    return wins / max(episodes, 1)


def goal_gap(env, k: int = 1) -> float:
    """Metres between the goal of the scene turned by the C4 element k and the turned goal: how far the task's
    reward moves from symmetric (world_goal: |d - g.d|; 0 for tasks without a goal and every other variant)."""
    if env.task not in ("push", "reach"):
        return 0.0
    g = Group.parse("C4").element(k)
    turned = act_on_points(g, env.goal_position()[:2], tuple(env.center))
    return float(np.linalg.norm(RotatedScene(env, g).goal_position()[:2] - turned))


@dataclass
class VariantGaps:
    """Both gaps of one task, variant and strength (``variant_gaps``)."""

    task: str
    variant: str
    strength: float
    value: float  # the physical quantity at this strength (sim.variants.RANGES)
    unit: str
    ee_gap_m: float  # environment gap, mean over layouts
    cube_gap_m: float
    heightmap_gap_m: float
    goal_gap_m: float  # |goal of the turned scene - turned goal| (goal_gap)
    reward_gap: float  # mean |r - r'| per step, shaped reward
    expert_gap: float
    expert_success: float
    averaged_success: float
    states: int


def variant_gaps(task: str, variant: str, strength: float | None, layouts: int = 2, episodes: int = 5,
                 seed: int = 0, group: str = "C4", steps: int = 30, **cfg) -> VariantGaps:
    """Environment gap (``measure_gap``, k = 1, over ``layouts`` layouts the env samples) and expert-policy gap
    (``expert_gap`` over ``episodes`` episodes) of ``task`` under ``variant`` at ``strength``; the env uses the
    shaped reward so that a goal the rotation moves shows in the reward gap before any success."""
    import sim
    from sim.variants import RANGES

    check_gap_task(task)
    env = sim.make_env(task, variant=variant, variant_strength=strength, reward="shaped", seed=seed, **cfg)
    horizon = env.horizon
    try:
        env_gaps = []
        for i in range(layouts):
            env.reset(seed=10_000 + seed + i)
            env_gaps.append(measure_gap(env, env.layout(), k=1, steps=steps))
        env.horizon = horizon  # measure_gap lengthens it to ``steps``
        goal = goal_gap(env)
        policy = expert_gap(env, episodes, seed, group)
    finally:
        env.close()

    def mean(name: str) -> float:
        return float(np.mean([getattr(g, name) for g in env_gaps]))

    return VariantGaps(task, variant, env.variant.strength, env.variant.value, RANGES[variant][2], mean("ee_gap_m"),
                       mean("cube_gap_m"), mean("heightmap_gap_m"), goal, mean("reward_gap") / steps, policy.gap,
                       policy.expert_success, policy.averaged_success, policy.states)


@dataclass(frozen=True)
class GoalPasses:
    """One world_goal push episode rolled on to the horizon past success: which of the goals pad + g.d (one per C4
    element g, the identity's the true goal) the cube came within the success radius of, and whether it ended in the
    true goal."""

    passed: tuple[bool, ...]
    ends_in_goal: bool
    # turns of the layout the start distribution admits (push keeps the cube 8 cm from the true goal, which does
    # not turn): 1/turns is this layout's weight in the endpoint bound of docs/sim.md
    admissible_turns: int


def rotated_goal_passes(env, policy: Callable[[dict], np.ndarray], seeds: list[int]) -> list[GoalPasses]:
    """Per reset seed, ``policy`` (obs -> action) driving to the horizon: the test of the bound in docs/sim.md.

    An exactly C4-equivariant policy in a C4-symmetric scene moves the cube, relative to the pad, along g of one path
    on the four turns of a layout; the true goal pad + d of each turn is pad + g^-1 d of the first. So the share of
    the turns it succeeds on is the share of the four goals one path passes: at most 1/4 if the path ends in one,
    more if it sweeps through several. The start distribution is rotation-invariant but for the layouts it refuses,
    so the endpoint bound on it is the mean of 1/admissible_turns over the layouts."""
    from sim.tasks import PUSH_SUCCESS_RADIUS

    if env.task != "push" or env.variant.name != "world_goal" or not env.variant.active:
        raise ConfigError(f"rotated goals need push with world_goal at a strength above 0, got {env.task!r} with "
                          f"{env.variant.name!r} at {env.variant.strength}")
    elements = Group.parse("C4").elements
    turned = np.array([act_on_points(g, env.variant.goal_offset()) for g in elements])
    out = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        turns = sum(env.objects_apart([turned_layout[name][:2] for name in ("cube", "goal")])
                    for turned_layout in (rotate_layout(info["layout"], g, env.center) for g in elements))
        goals = env.object_pose("goal")[0][:2] + turned
        passed = np.zeros(len(goals), dtype=bool)
        for _ in range(env.horizon):
            obs, *_ = env.step(policy(obs))
            passed |= np.linalg.norm(goals - _object_xy(env), axis=1) < PUSH_SUCCESS_RADIUS
        ends = bool(np.linalg.norm(goals[0] - _object_xy(env)) < PUSH_SUCCESS_RADIUS)
        out.append(GoalPasses(tuple(bool(p) for p in passed), ends, int(turns)))
    return out
