"""How far a task is from C4-symmetric: run the push expert from a layout, replay its actions rotated from the
rotated layout, and compare the rotated trajectory with the one obtained.

Gaps are in metres (ee and cube positions, max over the episode) and in reward (summed absolute difference).
``measure_drop_gap`` is a second, contact-free transition: a cube let go in the air, from a point and from its
rotated copy (the variant that tilts gravity shows here; the arm's controller hides it in the push).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_stack.symmetry import Group, act_on_action, act_on_image, act_on_points


@dataclass
class SymmetryGap:
    variant: str
    ee_gap_m: float
    cube_gap_m: float
    reward_gap: float
    heightmap_gap_m: float  # mean |g.hm(s) - hm(g.s)| at the start state


def _rollout(env, layout, actions=None, expert=None, steps: int = 0):
    """Positions of ee and cube after every step, rewards, the actions taken, the first heightmap."""
    obs, _ = env.reset(options={"layout": layout})
    first_hm = obs["heightmap"][0].copy()
    ee, cube, rewards, taken = [], [], [], []
    for t in range(len(actions) if actions is not None else steps):
        action = actions[t] if actions is not None else expert.act(obs, env)
        obs, reward, _, _, _ = env.step(action)
        taken.append(action)
        ee.append(env.ee_position()[:2].copy())
        cube.append(env.object_pose("cube")[0][:2].copy())
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

    g = Group.parse("C4").element(k)
    expert = sim.make_expert("push", env)
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
