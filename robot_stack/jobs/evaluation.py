"""The one evaluation routine of the online and offline jobs, and the one eval-seed scheme.

Eval episode i of a run trained with seed s resets the env with ``eval_episode_seed(s, i)``: far from every seed a
training, collection or expert episode uses, and disjoint between training seeds (up to 1000 eval episodes each), so
two seeds of a grid never share an eval layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.core import deterministic_action
from robot_stack.specs import PolicySpec

EVAL_SEED_BASE = 10_000_000
EVAL_EPISODES_PER_SEED = 1000

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]


def eval_episode_seed(train_seed: int, episode: int) -> int:
    """The reset seed of eval episode ``episode`` of a run trained with ``train_seed``."""
    if not 0 <= episode < EVAL_EPISODES_PER_SEED:
        raise ValueError(f"eval episode {episode} is outside 0..{EVAL_EPISODES_PER_SEED - 1}")
    return EVAL_SEED_BASE + train_seed * EVAL_EPISODES_PER_SEED + episode


def evaluate(policy: Policy, env: Any, episodes: int, train_seed: int) -> dict[str, float]:
    """Success rate (success at any step), mean return and mean length over ``episodes`` eval episodes."""
    successes, returns, lengths = [], [], []
    for i in range(episodes):
        obs, info = env.reset(seed=eval_episode_seed(train_seed, i))
        total, steps, done, success = 0.0, 0, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total, steps = total + float(reward), steps + 1
            success = success or bool(info.get("success", False))
            done = terminated or truncated
        successes.append(success)
        returns.append(total)
        lengths.append(steps)
    nan = float("nan")
    return {"success_rate": float(np.mean(successes)) if episodes else nan,
            "mean_return": float(np.mean(returns)) if episodes else nan,
            "mean_length": float(np.mean(lengths)) if episodes else nan, "episodes": episodes}


def torch_policy(actor: nn.Module, spec: PolicySpec, device: torch.device | str = "cpu") -> Policy:
    """The deployed (deterministic) policy tanh(mean) as obs -> action."""

    @torch.no_grad()
    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        hm = torch.as_tensor(np.asarray(obs["heightmap"], np.float32), device=device)[None]
        vec = torch.as_tensor(spec.observation.vector_of(obs), device=device)[None]
        return deterministic_action(actor, hm, vec)[0].cpu().numpy()

    return act


def random_policy(env: Any, seed: int) -> Policy:
    """Uniform actions in [-1, 1] over ``env``'s action space: the floor every trained policy is compared against."""
    rng = np.random.default_rng(seed)
    shape = env.action_space.shape
    return lambda obs: rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
