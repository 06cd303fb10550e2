"""Implicit Q-Learning (Kostrikov et al. 2021).

    value:  L_V = mean |tau - 1(u < 0)| u^2,        u = min_j Q'_j(s, a) - V(s)      (expectile tau)
    critic: L_Q = sum_i mean (Q_i(s, a) - r - gamma (1 - d) V(s'))^2
    actor:  L_pi = -mean exp(beta * (min_j Q'_j(s, a) - V(s))) log pi(a | s)   (weights clipped at max_weight)

``beta`` is the inverse temperature of the advantage weights (as in the IQL paper and CORL). The policy
for the log-likelihood is N(tanh(mean), std), so dataset actions at the bounds (gripper = +-1) are fine;
the deployed action is tanh(mean) as for every family. V(s) is an invariant critic evaluated at the zero
action (``policies.offline.StateValue``), so the equivariant families keep an invariant value.

Defaults follow the equivariant offline RL paper (Tangri et al. 2024): expectile 0.8, beta 0.5, lr 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from policies.networks import clone
from policies.offline import Batch, StateValue, TwinQ, actor_dist, check_finite, soft_update


@dataclass
class IQLConfig:
    gamma: float = 0.99
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    value_lr: float = 1e-4
    tau: float = 5e-3  # target critic soft update
    expectile: float = 0.8
    beta: float = 0.5  # inverse temperature of the advantage weights
    max_weight: float = 100.0
    max_grad_norm: float = 0.0  # 0: no clipping


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
    """``update(batch)`` does one gradient step of V, the twin Q and the actor."""

    def __init__(self, actor: nn.Module, make_critic: Callable[[], nn.Module], cfg: IQLConfig | None = None,
                 action_dim: int = 5, device: torch.device | str = "cpu",
                 make_value: Callable[[], nn.Module] | None = None) -> None:
        self.cfg = cfg or IQLConfig()
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

    def actor_loss(self, batch: Batch, adv: torch.Tensor) -> torch.Tensor:
        weights = advantage_weights(adv, self.cfg.beta, self.cfg.max_weight)
        mean, std = actor_dist(self.actor, batch.heightmap, batch.vector)
        return -(weights * gaussian_log_prob(mean, std, batch.action)).mean()

    def update(self, batch: Batch) -> dict[str, float]:
        loss_v, adv = self.value_loss(batch)
        self._step(self.value_opt, loss_v, self.value)
        loss_q = self.critic_loss(batch)
        self._step(self.critic_opt, loss_q, self.critic)
        loss_pi = self.actor_loss(batch, adv)
        self._step(self.actor_opt, loss_pi, self.actor)
        soft_update(self.target_critic, self.critic, self.cfg.tau)
        self.steps += 1
        info = {"value_loss": loss_v.item(), "critic_loss": loss_q.item(), "actor_loss": loss_pi.item(),
                "advantage": adv.mean().item()}
        check_finite(info, f"IQL step {self.steps}")
        return info

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)
        opt.step()
