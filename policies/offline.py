"""Pieces shared by the offline algorithms (CQL, IQL, BC): batches, twin critics, tanh-Gaussian sampling,
batch rotation, dataset checks and the training loop.

The algorithms themselves live in ``policies/cql.py``, ``policies/iql.py`` and ``policies/bc.py``; each
exposes ``update(batch) -> dict[str, float]`` and ``modules() -> dict[str, nn.Module]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from robot_stack.specs import ObservationSpec, SpecError, mismatches
from robot_stack.symmetry import Group, act_on_action, act_on_image

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Batch:
    """A batch of transitions as tensors: heightmaps [B,C,S,S], vectors [B,k], actions [B,5], rest [B]."""

    heightmap: torch.Tensor
    vector: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_heightmap: torch.Tensor
    next_vector: torch.Tensor
    done: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.action.shape[0])

    @classmethod
    def from_numpy(cls, data: dict[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
        def t(key: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(data[key], dtype=np.float32), device=device)

        return cls(t("heightmap"), t("vector"), t("action"), t("reward").reshape(-1), t("next_heightmap"),
                   t("next_vector"), t("done").reshape(-1))


class Algorithm(Protocol):
    actor: nn.Module

    def update(self, batch: Batch) -> dict[str, float]: ...

    def modules(self) -> dict[str, nn.Module]: ...


class TwinQ(nn.Module):
    """Two Q estimates from one critic that returns ``(q1, q2)`` or from two single-head critics."""

    def __init__(self, make_critic: Callable[[], nn.Module]) -> None:
        super().__init__()
        first = make_critic()
        self.fused = bool(getattr(first, "twin", False))
        self.heads = nn.ModuleList([first] if self.fused else [first, make_critic()])

    def forward(self, hm: torch.Tensor, vec: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            q1, q2 = self.heads[0](hm, vec, action)
        else:
            q1, q2 = self.heads[0](hm, vec, action), self.heads[1](hm, vec, action)
        return q1.reshape(-1), q2.reshape(-1)


class StateValue(nn.Module):
    """V(s) built from an invariant critic evaluated at the zero action (itself group-invariant)."""

    def __init__(self, critic: nn.Module, action_dim: int = 5) -> None:
        super().__init__()
        self.critic = critic
        self.action_dim = action_dim

    def forward(self, hm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(hm.shape[0], self.action_dim, device=hm.device, dtype=hm.dtype)
        out = self.critic(hm, vec, zero)
        if isinstance(out, tuple):
            out = out[0]
        return out.reshape(-1)


def actor_dist(actor: nn.Module, hm: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-tanh mean, std) with log-std clamped to [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, log_std = actor(hm, vec)
    return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()


def sample_tanh_gaussian(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(u), u ~ N(mean, std), and log pi(a) summed over action dims."""
    u = mean + std * torch.randn_like(mean)
    action = torch.tanh(u)
    log_prob = torch.distributions.Normal(mean, std).log_prob(u)
    # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
    log_prob = log_prob - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return action, log_prob.sum(-1)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)


def deterministic_action(actor: nn.Module, hm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    mean, _ = actor(hm, vec)
    return torch.tanh(mean)


# ---------------------------------------------------------------- batch rotation (data augmentation)

def rotate_batch(data: dict[str, np.ndarray], group: Group, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Act on every transition with a random element of ``group``: heightmaps (obs and next obs) and
    the action; vector fields are invariant scalars (ARCHITECTURE: Observation) and stay as they are."""
    out = dict(data)
    picks = rng.integers(group.order, size=len(data["action"]))
    hm, nhm, act = data["heightmap"].copy(), data["next_heightmap"].copy(), data["action"].copy()
    for index in np.unique(picks):
        g = group.element(int(index))
        if g.is_identity:
            continue
        rows = picks == index
        hm[rows] = act_on_image(g, hm[rows])
        nhm[rows] = act_on_image(g, nhm[rows])
        act[rows] = act_on_action(g, act[rows])
    out.update(heightmap=hm, next_heightmap=nhm, action=act)
    return out


# ---------------------------------------------------------------- transitions in memory

TRANSITION_KEYS = ("heightmap", "vector", "action", "reward", "next_heightmap", "next_vector", "done")


@dataclass
class TransitionArrays:
    """All transitions of one or more datasets as flat numpy arrays, for fast sampling."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["action"])

    def sample(self, batch: int, rng: np.random.Generator, group: Group | None = None) -> dict[str, np.ndarray]:
        idx = rng.integers(len(self), size=batch)
        data = {k: v[idx] for k, v in self.arrays.items()}
        return rotate_batch(data, group, rng) if group is not None and group.order > 1 else data

    @classmethod
    def concat(cls, parts: list[TransitionArrays]) -> TransitionArrays:
        return cls({k: np.concatenate([p.arrays[k] for p in parts]) for k in TRANSITION_KEYS})


def check_transitions(data: TransitionArrays, source: str) -> None:
    """Refuse, before training, data that cannot train anything: no transitions, NaN/inf, bad shapes."""
    n = len(data)
    if n == 0:
        raise SpecError(f"dataset {source}: no transitions (an empty dataset cannot be trained on)")
    for key in TRANSITION_KEYS:
        arr = data.arrays[key]
        if len(arr) != n:
            raise SpecError(f"dataset {source}: {key} has {len(arr)} rows, action has {n}")
        bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise SpecError(f"dataset {source}: {key} contains NaN or inf in {int(bad.sum())} transition(s), "
                            f"first rows {rows}")
    if data.arrays["action"].shape[1:] != (5,):
        raise SpecError(f"dataset {source}: actions must be [N, 5], got {list(data.arrays['action'].shape)}")


def check_obs_spec(expected: ObservationSpec, actual: ObservationSpec, source: str) -> None:
    diffs = mismatches(expected, actual)
    if diffs:
        raise SpecError(f"dataset {source}: observation spec differs from the config: " + "; ".join(diffs))


# ---------------------------------------------------------------- the loop

def batches(data: TransitionArrays, batch_size: int, rng: np.random.Generator, group: Group | None,
            device: torch.device) -> Iterator[Batch]:
    while True:
        yield Batch.from_numpy(data.sample(batch_size, rng, group), device)


def train_loop(algo: Algorithm, stream: Iterator[Batch], steps: int, log_every: int = 100,
               progress: bool = True, callback: Callable[[int, dict[str, float]], Any] | None = None
               ) -> list[dict[str, float]]:
    """Run ``steps`` gradient updates; returns the logged metrics (mean over each ``log_every`` window)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(type(algo).__name__, total=steps, info="")
        for step in range(1, steps + 1):
            metrics = algo.update(next(stream))
            window.append(metrics)
            if step % log_every == 0 or step == steps:
                mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                mean["step"] = step
                history.append(mean)
                window = []
                bar.update(task, info=" ".join(f"{k}={v:.3g}" for k, v in mean.items() if k != "step"))
                if callback is not None:
                    callback(step, mean)
            bar.advance(task)
    return history


def check_finite(metrics: dict[str, float], step_name: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"{step_name}: non-finite {bad} - lower the learning rate or check the data")
