"""Implicit Q-Learning (Kostrikov et al. 2021).

    value:  L_V = mean |tau - 1(u < 0)| u^2,        u = min_j Q'_j(s, a) - V(s)      (expectile tau)
    critic: L_Q = sum_i mean (Q_i(s, a) - r - gamma (1 - d) V(s'))^2
    actor:  L_pi = mean w(s, a) * ||tanh(mu(s)) - a||^2                 (actor_loss "deterministic", default)
        or  L_pi = -mean w(s, a) * log N(a; tanh(mu(s)), sigma(s))      (actor_loss "gaussian")
            w(s, a) = min(exp(beta * (min_j Q'_j(s, a) - V(s))), max_weight)

``beta`` is the inverse temperature of the advantage weights, as in the IQL paper, CORL and d3rlpy
(``weight_temp``); the default 3 is the IQL paper's. The seed paper lists "beta 0.5": read as an inverse
temperature it makes every weight exp(0.5 A) ~ 1 for the small advantages of sparse-reward tasks, i.e. plain
BC; read as a temperature it is beta = 2 here. Either is one override away (``iql.beta=...``).

The deterministic actor loss is advantage-weighted regression of the deployed action tanh(mu(s)) (CORL's
``iql_deterministic``, the Gaussian log-likelihood with a fixed std): with a learned per-state std the actor can
spend its early updates shrinking the std of near-constant action dims instead of fitting (dx, dy)
(docs/results/offline.md has the measurement). The Gaussian policy is N(tanh(mu), sigma) (as CORL's), so dataset
actions at the bounds (gripper = +-1) need no clipping.

V(s) is a separate network with its own weights and optimiser: the critic architecture with the constant zero
action as input (``policies.core.StateValue``), so it is a function of s alone and, for the equivariant
families, invariant. The deployed action is tanh(mu(s)) for every family.

Defaults follow the equivariant offline RL paper (Tangri et al. 2024) for the expectile (0.8) and the learning
rate (1e-4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from policies.core import Batch, StateValue, TwinQ, actor_dist, check_finite, soft_update
from policies.networks import clone


@dataclass
class IQLConfig:
    gamma: float = 0.99
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    value_lr: float = 1e-4
    tau: float = 5e-3  # target critic soft update
    expectile: float = 0.8
    beta: float = 3.0  # inverse temperature of the advantage weights: exp(beta * A)
    max_weight: float = 100.0
    actor_loss: str = "deterministic"  # "deterministic" (weighted regression of tanh(mu)) | "gaussian" (log-lik.)
    max_grad_norm: float = 0.0  # 0: no clipping
    # value- and critic-only updates first: a fine-tuned actor waits until V and Q fit the data, instead of being
    # regressed under the advantage weights of an untrained V from the first update
    actor_warmup_updates: int = 0

    def __post_init__(self) -> None:
        if self.actor_warmup_updates < 0:
            raise ValueError(f"iql.actor_warmup_updates must be >= 0, got {self.actor_warmup_updates}")


ACTOR_LOSSES = ("deterministic", "gaussian")


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``mean |expectile - 1(diff < 0)| * diff^2`` (asymmetric L2)."""
    weight = torch.abs(expectile - (diff < 0).to(diff.dtype))
    return (weight * diff ** 2).mean()


def advantage_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(beta * A), max_weight)``."""
    return torch.exp(beta * advantage).clamp(max=max_weight)


def gaussian_log_prob(mean_pre_tanh: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log N(action; tanh(mean), std), summed over the action dims."""
    return torch.distributions.Normal(torch.tanh(mean_pre_tanh), std).log_prob(action).sum(-1)


class IQL:
    """``update(batch)`` does one gradient step of V, the twin Q and (after ``actor_warmup_updates``) the actor."""

    def __init__(self, actor: nn.Module, make_critic: Callable[[], nn.Module], cfg: IQLConfig | None = None,
                 action_dim: int = 5, device: torch.device | str = "cpu",
                 make_value: Callable[[], nn.Module] | None = None) -> None:
        self.cfg = cfg or IQLConfig()
        if self.cfg.actor_loss not in ACTOR_LOSSES:
            raise ValueError(f"iql.actor_loss {self.cfg.actor_loss!r}; valid: {', '.join(ACTOR_LOSSES)}")
        self.device = torch.device(device)
        self.actor = actor.to(self.device)
        self.critic = TwinQ(make_critic).to(self.device)
        self.target_critic = clone(self.critic).requires_grad_(False)
        self.value = StateValue((make_value or make_critic)(), action_dim).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=self.cfg.value_lr)
        self.steps = 0

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic,
                "value": self.value}

    def value_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Expectile loss of V and the (detached) advantage min Q'(s, a) - V(s)."""
        with torch.no_grad():
            tq1, tq2 = self.target_critic(batch.heightmap, batch.vector, batch.action)
            target_q = torch.min(tq1, tq2)
        v = self.value(batch.heightmap, batch.vector)
        adv = target_q - v
        return expectile_loss(adv, self.cfg.expectile), adv.detach()

    def critic_loss(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            next_v = self.value(batch.next_heightmap, batch.next_vector)
            y = batch.reward + self.cfg.gamma * (1.0 - batch.done) * next_v
        q1, q2 = self.critic(batch.heightmap, batch.vector, batch.action)
        return ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()

    def actor_loss(self, batch: Batch, adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The advantage-weighted actor loss and the weights (for logging)."""
        weights = advantage_weights(adv, self.cfg.beta, self.cfg.max_weight)
        if self.cfg.actor_loss == "deterministic":
            mean, _ = self.actor(batch.heightmap, batch.vector)
            fit = -((torch.tanh(mean) - batch.action) ** 2).sum(-1)
        else:
            mean, std = actor_dist(self.actor, batch.heightmap, batch.vector)
            fit = gaussian_log_prob(mean, std, batch.action)
        return -(weights * fit).mean(), weights

    def update(self, batch: Batch) -> dict[str, float]:
        loss_v, adv = self.value_loss(batch)
        self._step(self.value_opt, loss_v, self.value)
        loss_q = self.critic_loss(batch)
        self._step(self.critic_opt, loss_q, self.critic)
        warming_up = self.steps < self.cfg.actor_warmup_updates
        with torch.set_grad_enabled(not warming_up):  # the loss is still logged while the actor waits
            loss_pi, weights = self.actor_loss(batch, adv)
        if not warming_up:
            self._step(self.actor_opt, loss_pi, self.actor)
        soft_update(self.target_critic, self.critic, self.cfg.tau)
        self.steps += 1
        info = {"value_loss": loss_v.item(), "critic_loss": loss_q.item(), "actor_loss": loss_pi.item(),
                "advantage": adv.mean().item(), "advantage_std": adv.std().item() if adv.numel() > 1 else 0.0,
                "weight_max": weights.max().item()}
        check_finite(info, f"IQL step {self.steps}")
        return info

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)
        opt.step()
