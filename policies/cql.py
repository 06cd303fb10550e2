"""Conservative Q-Learning (Kumar et al. 2020), SAC-based, with the Lagrangian variant as an option.

Critic loss per head i:
    TD:      (Q_i(s, a) - y)^2,  y = r + gamma (1 - d) (min_j Q'_j(s', a') [- alpha_ent log pi(a'|s')]),  a' ~ pi(s')
    penalty: T * mean_s logsumexp_{a ~ mu} (Q_i(s, a) / T) - mean_{(s,a) ~ D} Q_i(s, a)
where the logsumexp runs over ``num_sampled`` uniform actions, ``num_sampled`` policy actions at s and
``num_sampled`` policy actions at s' (evaluated at s), each corrected by its sampling density
(CQL(H) with importance sampling, as in the paper's code and CORL). The penalty is weighted by ``alpha``,
or, with ``lagrange: true``, by a learned alpha' that keeps it near ``target_action_gap``.
Actor and entropy temperature: SAC, plus ``bc_weight * ||tanh(mu(s)) - a||^2`` when ``bc_weight > 0``.

``bc_weight`` (default 0, the paper's BC-free actor) is an option.

Defaults follow the equivariant offline RL paper (Tangri et al. 2024): alpha 1, 10 sampled actions, lr 1e-4.
The critic is whatever ``policies.networks.build_critic`` makes (invariant for the equivariant families),
the actor whatever ``build_actor`` makes (equivariant for them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from policies.bc import bc_loss
from policies.core import Batch, TwinQ, actor_dist, check_finite, repeat_rows, sample_tanh_gaussian, soft_update
from policies.networks import clone


@dataclass
class CQLConfig:
    gamma: float = 0.99
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    alpha_lr: float = 1e-4  # entropy temperature (and alpha' with lagrange)
    tau: float = 5e-3  # target critic soft update
    init_temperature: float = 1.0  # SAC entropy temperature at start
    target_entropy: float | None = None  # default: -action_dim
    backup_entropy: bool = False  # subtract alpha_ent log pi(a'|s') in the TD target
    alpha: float = 1.0  # conservative weight
    num_sampled: int = 10  # actions per state of each kind (uniform, pi(s), pi(s')) in the logsumexp
    cql_temperature: float = 1.0
    lagrange: bool = False
    target_action_gap: float = 10.0  # with lagrange: the penalty alpha' aims for
    max_grad_norm: float = 0.0  # 0: no clipping
    bc_weight: float = 0.0  # > 0: add bc_weight * ||tanh(mu(s)) - a||^2 to the actor loss (not in the paper)
    encode_once: bool = True  # encode each heightmap once for all sampled actions (False: re-encode, same values)
    # critic-only updates first: a fine-tuned actor (and the temperature) wait until the critic fits the data,
    # instead of climbing an untrained critic from the first update
    actor_warmup_updates: int = 0

    def __post_init__(self) -> None:
        if self.actor_warmup_updates < 0:
            raise ValueError(f"cql.actor_warmup_updates must be >= 0, got {self.actor_warmup_updates}")


def cql_penalty(q_data: torch.Tensor, q_sampled: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T * mean_s logsumexp_k (q_sampled[s, k] / T) - mean_s q_data[s]``.

    ``q_data`` [B]: Q at the dataset actions; ``q_sampled`` [B, K]: Q at the sampled actions, already
    corrected by their log-densities.
    """
    lse = torch.logsumexp(q_sampled / temperature, dim=1) * temperature
    return lse.mean() - q_data.mean()


def _repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.repeat_interleave(n, dim=0)


class CQL:
    """``update(batch)`` does one gradient step of the critic and (after ``actor_warmup_updates``) the actor and
    the entropy temperature; alpha' (with ``lagrange``) every step."""

    def __init__(self, actor: nn.Module, make_critic: Callable[[], nn.Module], cfg: CQLConfig | None = None,
                 action_dim: int = 5, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg or CQLConfig()
        self.device = torch.device(device)
        self.action_dim = action_dim
        self.actor = actor.to(self.device)
        self.critic = TwinQ(make_critic).to(self.device)
        self.target_critic = clone(self.critic).requires_grad_(False)
        self.log_alpha_ent = torch.tensor(math.log(self.cfg.init_temperature), device=self.device,
                                          requires_grad=True)
        self.log_alpha_prime = torch.zeros((), device=self.device, requires_grad=True)
        self.target_entropy = (-float(action_dim) if self.cfg.target_entropy is None
                               else self.cfg.target_entropy)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha_ent], lr=self.cfg.alpha_lr)
        self.alpha_prime_opt = torch.optim.Adam([self.log_alpha_prime], lr=self.cfg.alpha_lr)
        self.steps = 0

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}

    # ------------------------------------------------------------ losses

    def sampled_actions(self, batch: Batch, next_dist: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The penalty's actions per state [B, 3N, 5] (N uniform, N from pi(s), N from pi(s')) and their
        log-densities [B, 3N]. ``next_dist``: pi(s')'s (pre-tanh mean, std) when the caller has it already."""
        n, b = self.cfg.num_sampled, batch.size
        with torch.no_grad():
            mean, std = actor_dist(self.actor, batch.heightmap, batch.vector)
            next_mean, next_std = next_dist or actor_dist(self.actor, batch.next_heightmap, batch.next_vector)
            pi, logp = sample_tanh_gaussian(_repeat(mean, n), _repeat(std, n))
            next_pi, next_logp = sample_tanh_gaussian(_repeat(next_mean, n), _repeat(next_std, n))
        uniform = torch.rand(b * n, self.action_dim, device=self.device) * 2.0 - 1.0
        uniform_logp = torch.full((b * n,), self.action_dim * math.log(0.5), device=self.device)
        actions = torch.stack([uniform.view(b, n, -1), pi.view(b, n, -1), next_pi.view(b, n, -1)], dim=1)
        log_dens = torch.stack([uniform_logp.view(b, n), logp.view(b, n), next_logp.view(b, n)], dim=1)
        return actions.reshape(b, 3 * n, -1), log_dens.reshape(b, 3 * n)

    def sampled_q(self, batch: Batch, actions: torch.Tensor | None = None, log_dens: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q1, Q2 at the data actions [B] and at the density-corrected sampled actions [B, K] (``sampled_actions``
        unless given). With ``encode_once`` each heightmap goes through the critic's encoder once and only the
        Q heads see the K actions; otherwise the critic runs whole on the states repeated K times (same values)."""
        if actions is None or log_dens is None:
            actions, log_dens = self.sampled_actions(batch)
        b, k = actions.shape[0], actions.shape[1]
        flat = actions.reshape(b * k, -1)
        if self.cfg.encode_once:
            feats = self.critic.encode(batch.heightmap)
            q1, q2 = self.critic.from_features(feats, batch.vector, batch.action)
            r1, r2 = self.critic.from_features(repeat_rows(feats, k), _repeat(batch.vector, k), flat)
        else:
            hm = torch.cat([batch.heightmap, _repeat(batch.heightmap, k)])
            vec = torch.cat([batch.vector, _repeat(batch.vector, k)])
            q1, q2 = self.critic(hm, vec, torch.cat([batch.action, flat]))
            q1, r1, q2, r2 = q1[:b], q1[b:], q2[:b], q2[b:]
        return q1, q2, r1.view(b, k) - log_dens, r2.view(b, k) - log_dens

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        with torch.no_grad():
            next_dist = actor_dist(self.actor, batch.next_heightmap, batch.next_vector)
            next_a, next_logp = sample_tanh_gaussian(*next_dist)
            tq1, tq2 = self.target_critic(batch.next_heightmap, batch.next_vector, next_a)
            target_q = torch.min(tq1, tq2)
            if cfg.backup_entropy:
                target_q = target_q - self.log_alpha_ent.exp() * next_logp
            y = batch.reward + cfg.gamma * (1.0 - batch.done) * target_q
        q1, q2, s1, s2 = self.sampled_q(batch, *self.sampled_actions(batch, next_dist))
        td = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        p1 = cql_penalty(q1, s1, cfg.cql_temperature)
        p2 = cql_penalty(q2, s2, cfg.cql_temperature)
        if cfg.lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            conservative = cfg.alpha * alpha_prime.detach() * (p1 + p2 - 2 * cfg.target_action_gap)
            self._alpha_prime_loss = -cfg.alpha * alpha_prime * (p1.detach() + p2.detach()
                                                                 - 2 * cfg.target_action_gap) * 0.5
        else:
            conservative = cfg.alpha * (p1 + p2)
        info = {"td_loss": td.item(), "cql_penalty": 0.5 * (p1 + p2).item(), "q_data": q1.mean().item(),
                "q_target": y.mean().item()}
        return td + conservative, info

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        mean, std = actor_dist(self.actor, batch.heightmap, batch.vector)
        pi, logp = sample_tanh_gaussian(mean, std)
        q1, q2 = self.critic(batch.heightmap, batch.vector, pi)
        alpha = self.log_alpha_ent.exp()
        loss = (alpha.detach() * logp - torch.min(q1, q2)).mean()
        info = {"entropy_temp": alpha.item(), "log_pi": logp.mean().item()}
        if self.cfg.bc_weight > 0:
            bc = bc_loss(mean, batch.action)
            loss = loss + self.cfg.bc_weight * bc
            info["bc_loss"] = bc.item()
        alpha_loss = -(self.log_alpha_ent * (logp.detach() + self.target_entropy)).mean()
        return loss, alpha_loss, {"actor_loss": loss.item(), **info}

    # ------------------------------------------------------------ step

    def update(self, batch: Batch) -> dict[str, float]:
        loss_c, info = self.critic_loss(batch)
        self._step(self.critic_opt, loss_c, self.critic)
        if self.cfg.lagrange:
            self._step(self.alpha_prime_opt, self._alpha_prime_loss, None)
            info["alpha_prime"] = self.log_alpha_prime.exp().item()
        warming_up = self.steps < self.cfg.actor_warmup_updates
        self.critic.requires_grad_(False)
        with torch.set_grad_enabled(not warming_up):  # the losses are still logged while the actor waits
            loss_a, loss_t, info_a = self.actor_loss(batch)
        if not warming_up:
            self._step(self.actor_opt, loss_a, self.actor)
            self._step(self.alpha_opt, loss_t, None)
        self.critic.requires_grad_(True)
        soft_update(self.target_critic, self.critic, self.cfg.tau)
        self.steps += 1
        info.update(info_a, critic_loss=loss_c.item())
        check_finite(info, f"CQL step {self.steps}")
        return info

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module | None) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if module is not None and self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)
        opt.step()
