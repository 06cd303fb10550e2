"""The RL core every algorithm shares (SAC, CQL, IQL, BC), written once: the device choice, the batch type, the
twin critic, the tanh-Gaussian actor sampler, the soft target update, the actor's learning-rate schedule and the
finite-loss check.

The actor's log-std bounds are ``NetworkConfig.log_std_min`` / ``log_std_max``, applied in ``Actor.forward``;
nothing here clamps again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from robot_stack.config import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Batch:
    """Transitions as tensors: heightmaps [B,C,S,S], vectors [B,k], actions [B,5], the rest [B].

    ``discount`` is the factor of the bootstrapped value (gamma^n (1 - done) for n-step returns); when a source has
    none, ``gamma * (1 - done)`` is used. ``expert`` marks demonstration transitions (1.0) for a BC term.
    """

    heightmap: torch.Tensor
    vector: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_heightmap: torch.Tensor
    next_vector: torch.Tensor
    done: torch.Tensor
    discount: torch.Tensor | None = None
    expert: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.action.shape[0])

    def bootstrap(self, gamma: float) -> torch.Tensor:
        return self.discount if self.discount is not None else gamma * (1.0 - self.done)

    @classmethod
    def from_numpy(cls, data: dict[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
        def tensor(key: str) -> torch.Tensor | None:
            if key not in data:
                return None
            out = torch.as_tensor(np.asarray(data[key], dtype=np.float32), device=device)
            return out.reshape(-1) if out.ndim > 1 and key in _PER_SAMPLE else out

        values = {f.name: tensor(f.name) for f in fields(cls)}
        if values["done"] is None:  # a replay buffer stores the discount instead
            values["done"] = torch.zeros_like(values["reward"])
        return cls(**values)


_PER_SAMPLE = ("reward", "done", "discount", "expert")

LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(kind: str) -> None:
    if kind not in LR_SCHEDULES:
        raise ConfigError(f"actor_lr_schedule {kind!r}; valid: {', '.join(LR_SCHEDULES)}")


def actor_lr_schedule(opt: torch.optim.Optimizer, kind: str, updates: int, warmup_updates: int = 0
                      ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Step once per update. ``constant``: None. ``cosine``: the learning rate is held through the warm-up updates,
    then falls along a half cosine to 0 at update ``updates`` and stays there (CORL's IQL anneals its actor so):
    the last updates of a fixed-length run take ever smaller steps, so the policy it ends on does not hinge on its
    last few batches."""
    check_lr_schedule(kind)
    if kind == "constant":
        return None
    span = max(updates - warmup_updates, 1)

    def factor(update: int) -> float:
        done = min(max(update - warmup_updates, 0), span) / span
        return 0.5 * (1.0 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def check_actor_average(decay: float) -> None:
    if not 0.0 <= decay < 1.0:
        raise ConfigError(f"actor_average {decay!r}: the decay of the actor's weight average must be in [0, 1)")


def actor_average(actor: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the actor's weights (torch's ``AveragedModel``), updated once per update by
    ``average.update_parameters(actor)``; None for decay 0. Offline runs end at a fixed update count, and the actor
    of their last update swings with its last batches; the average over the last ~1 / (1 - decay) updates does
    not. While the actor waits out a warm-up, its weights do not move, so neither does the average."""
    check_actor_average(decay)
    if decay == 0.0:
        return None
    return AveragedModel(actor, multi_avg_fn=get_ema_multi_avg_fn(decay))


class Algorithm(Protocol):
    actor: nn.Module
    actor_opt: torch.optim.Optimizer

    def update(self, batch: Batch) -> dict[str, float]: ...

    def modules(self) -> dict[str, nn.Module]: ...


class TwinQ(nn.Module):
    """Two Q estimates, each [B]: from one critic that returns ``(q1, q2)`` or from two single-head critics."""

    def __init__(self, make_critic: Callable[[], nn.Module], fused: bool | None = None) -> None:
        super().__init__()
        first = make_critic()
        self.fused = bool(getattr(first, "twin", False)) if fused is None else fused
        self.heads = nn.ModuleList([first] if self.fused else [first, make_critic()])

    def forward(self, hm: torch.Tensor, vec: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            q1, q2 = self.heads[0](hm, vec, action)
        else:
            q1, q2 = self.heads[0](hm, vec, action), self.heads[1](hm, vec, action)
        return q1.reshape(-1), q2.reshape(-1)

    def encode(self, hm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per critic, what ``from_features`` needs: ``Critic.encode(hm)`` when the critic has it (one encoder pass
        per state), else the heightmap itself (critics without the split are run whole)."""
        return tuple(h.encode(hm) if hasattr(h, "q_from_features") else hm for h in self.heads)

    def from_features(self, feats: tuple[torch.Tensor, ...], vec: torch.Tensor, action: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` after ``encode``; rows of ``feats`` may be repeated (``repeat_rows``) to pair a state with
        several actions."""
        outs = [h.q_from_features(f, vec, action) if hasattr(h, "q_from_features") else h(f, vec, action)
                for h, f in zip(self.heads, feats, strict=True)]
        q1, q2 = outs[0] if self.fused else outs
        return q1.reshape(-1), q2.reshape(-1)


def repeat_rows(feats: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    """Each row n times in a row ([s0, s0, ..., s1, s1, ...]), for every tensor of ``TwinQ.encode``'s output."""
    return tuple(f.repeat_interleave(n, dim=0) for f in feats)


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
    """(pre-tanh mean, std) of the actor's Gaussian; its log-std is already within the network config's bounds."""
    mean, log_std = actor(hm, vec)
    return mean, log_std.exp()


def sample_tanh_gaussian(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(u), u ~ N(mean, std), and log pi(a) summed over action dims."""
    u = mean + std * torch.randn_like(mean)
    action = torch.tanh(u)
    log_prob = torch.distributions.Normal(mean, std).log_prob(u)
    # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
    log_prob = log_prob - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return action, log_prob.sum(-1)


def deterministic_action(actor: nn.Module, hm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """The deployed action tanh(mean)."""
    mean, _ = actor(hm, vec)
    return torch.tanh(mean)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging of the parameters; buffers (running statistics, cached filters) are copied. The module walk
    is ``policies.networks.traversal``'s (``parameters()`` costs ~6 ms per escnn network, the lerps ~0.1 ms)."""
    from policies.networks.traversal import buffers, parameters

    for t, s in zip(parameters(target), parameters(source), strict=True):
        t.lerp_(s, tau)
    for t, s in zip(buffers(target), buffers(source), strict=True):
        t.copy_(s)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters with ``requires_grad`` off inside the block (autograd then builds no graph to them)
    and on again after it, whatever happens inside."""
    from policies.networks.traversal import parameters

    params = parameters(module)
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def regularization(module: nn.Module) -> torch.Tensor:
    """The relaxed layers' pull toward equal weights: the sum of ``regularization()`` over the actors and critics
    in ``module`` (0 for the exact and CNN families)."""
    from policies.networks import Actor, Critic
    from policies.networks.traversal import submodules

    nets = [m for m in submodules(module) if isinstance(m, Actor | Critic)]
    return sum((net.regularization().to(next(net.parameters()).device) for net in nets), torch.zeros(()))


def check_finite(metrics: dict[str, float], step_name: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"{step_name}: non-finite {bad} - lower the learning rate or check the data")
