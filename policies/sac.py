"""Soft actor-critic over the network families (relaxed / exact / cnn / cnn_aug), in one file.

Reference settings (equivariant SAC on heightmaps, docs/ARCHITECTURE.md "Symmetry"): batch 64, lr 1e-3, gamma 0.99,
tau 1e-2, initial temperature 1e-2, expert episodes seeded, each transition stored with 4 extra
randomly rotated copies. The actor comes from ``policies.networks.build_actor`` (equivariant
(dx, dy), invariant rest + log-std), the twin critics from ``build_critic`` (invariant Q); target
critics are Polyak averages; the temperature is tuned to a target entropy.

Options: ``n_step`` returns (folded into the stored ``discount``, see ``policies.replay_buffer``),
DrQ-style random shift (``random_shift`` pixels of replicate padding), and random-rotation
augmentation of every batch by an element of the policy's group (``rotation_aug``; the CNN
baseline ``cnn_aug`` turns it on, through ``policies.data.rotate_batch``). The relaxed
families' regulariser (``regularization()`` of actor and critic) is added to their losses.
``bc_weight`` > 0 adds a behaviour-cloning term on the expert transitions of each batch, the SACfD
recipe of the equivariant SAC work: ``bc_weight * mean over expert samples of |tanh(mean) - a_expert|^2``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from policies.bc import bc_loss
from policies.checkpoint import load_module_state, module_state
from policies.core import Batch, TwinQ, actor_dist, frozen, regularization, sample_tanh_gaussian, soft_update
from policies.data import rotate_batch
from robot_stack.specs import PolicySpec
from robot_stack.symmetry import Group


@dataclass
class SACConfig:
    batch_size: int = 64
    lr: float = 1e-3
    critic_lr: float | None = None  # defaults to lr
    alpha_lr: float | None = None  # defaults to lr
    gamma: float = 0.99
    tau: float = 1e-2
    init_temperature: float = 1e-2
    target_entropy: float | None = None  # defaults to -action_dim
    # the entropy bonus in the critic's target: off, Q is the discounted task return alone. With a sparse 0/1
    # reward at the end of a 40-step episode and gamma 0.95, the bonus can outweigh the success in Q, and the
    # actor then follows the entropy instead of the task; the actor's loss keeps its entropy term either way
    backup_entropy: bool = True
    n_step: int = 1
    random_shift: int = 0  # DrQ pad in pixels; 0 = off
    rotation_aug: bool | None = None  # None = on for the cnn_aug family only
    rotated_copies: int = 4  # extra randomly rotated copies of each stored transition
    actor_update_every: int = 1
    # critic-only updates first: a BC-pretrained actor waits until the critic has learned its values, instead of
    # being pulled about by an untrained critic (and an untrained Q-filter) from the first update
    actor_warmup_updates: int = 0
    grad_clip: float = 0.0  # 0 = off
    bc_weight: float = 0.0  # SACfD: L2 pull of the actor's mean action toward the expert's on expert samples; 0 = off
    bc_filter: bool = False  # Q-filter: the BC pull only where Q(s, a_expert) > Q(s, pi(s))
    bc_decay_updates: int = 0  # the BC weight fades linearly to 0 over this many updates; 0 = constant
    demo_fraction: float = 0.0  # share of every batch drawn from the expert transitions; 0 = uniform over the buffer
    bc_pretrain_updates: int = 0  # behaviour-cloning updates of the actor on the demonstrations before SAC starts
    # the pre-training also fits the actor's std to its own error on the demonstrations (DART's noise level), so
    # the first episodes explore around the cloned action at that scale instead of at the initial std of about 1
    bc_pretrain_std: bool = False
    continuous_rotations: bool = False  # stored rotated copies by random angles instead of group elements

    def __post_init__(self) -> None:
        for name in ("batch_size", "n_step", "actor_update_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"sac.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"sac.gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"sac.tau must be in (0, 1], got {self.tau}")
        if self.init_temperature <= 0 or self.lr <= 0:
            raise ValueError(f"sac.lr and sac.init_temperature must be positive, got {self.lr}, "
                             f"{self.init_temperature}")
        if min(self.random_shift, self.rotated_copies, self.bc_weight, self.bc_decay_updates,
               self.bc_pretrain_updates, self.actor_warmup_updates) < 0:
            raise ValueError("sac.random_shift, rotated_copies, bc_weight, bc_decay_updates, bc_pretrain_updates and "
                             "actor_warmup_updates must be >= 0")
        if not 0.0 <= self.demo_fraction <= 1.0:
            raise ValueError(f"sac.demo_fraction must be in [0, 1], got {self.demo_fraction}")


def random_shift(hm: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` pixels, then crop back at a random offset per sample."""
    b, _, h, w = hm.shape
    padded = F.pad(hm, (pad, pad, pad, pad), mode="replicate")
    eps = 1.0 / (h + 2 * pad)
    ar = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, device=hm.device)[:h]
    base_x, base_y = ar.unsqueeze(0).repeat(h, 1), ar.unsqueeze(1).repeat(1, w)
    base = torch.stack([base_x, base_y], dim=-1).unsqueeze(0).repeat(b, 1, 1, 1)
    shift = torch.randint(0, 2 * pad + 1, (b, 1, 1, 2), device=hm.device).to(hm.dtype) * 2.0 * eps
    return F.grid_sample(padded, base + shift, padding_mode="zeros", align_corners=False)


def residual_nll(mean_pre_tanh: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood of the cloned action's error, per action dim: minimised, ``exp(log_std)``
    is the root-mean-square error of tanh(mean) (in action units). Give the mean detached: the likelihood must
    not pull it off the demonstrations to explain them by a wider std."""
    residual = torch.tanh(mean_pre_tanh) - action
    return (log_std + 0.5 * residual ** 2 * torch.exp(-2.0 * log_std)).sum(-1).mean()


class SAC:
    """The agent: networks, optimisers, temperature; ``act``, ``update``, ``state_dict``."""

    def __init__(self, spec: PolicySpec, cfg: SACConfig, actor: nn.Module, make_critic: Callable[[], nn.Module],
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.spec, self.cfg, self.device = spec, cfg, torch.device(device)
        self.group = Group.parse(spec.group)
        self.actor = actor.to(self.device)
        self.critic = TwinQ(make_critic).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = -float(spec.action.dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr or cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr or cfg.lr)
        self.rotation_aug = cfg.rotation_aug if cfg.rotation_aug is not None else spec.family == "cnn_aug"
        self.rng = np.random.default_rng(seed)
        self.updates = 0

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def act(self, heightmap: np.ndarray, vector: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Batched actions in [-1, 1]: ``heightmap [B, C, S, S]``, ``vector [B, k]`` -> ``[B, 5]``."""
        mean, std = actor_dist(self.actor, self._tensor(heightmap), self._tensor(vector))
        action = torch.tanh(mean) if deterministic else sample_tanh_gaussian(mean, std)[0]
        return action.cpu().numpy()

    def _augment(self, hm: torch.Tensor) -> torch.Tensor:
        return random_shift(hm, self.cfg.random_shift) if self.cfg.random_shift > 0 else hm

    def update(self, sample: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient step on the critics, (every ``actor_update_every``, after ``actor_warmup_updates``) the actor
        and the temperature, from a replay-buffer sample (numpy arrays)."""
        if self.rotation_aug and self.group.order > 1:
            sample = rotate_batch(sample, self.group, self.rng)
        batch = Batch.from_numpy(sample, self.device)
        hm, next_hm = self._augment(batch.heightmap), self._augment(batch.next_heightmap)
        disc = batch.bootstrap(self.cfg.gamma)
        info = self._update_critic(hm, batch.vector, batch.action, batch.reward, next_hm, batch.next_vector, disc)
        self.updates += 1
        if self.updates > self.cfg.actor_warmup_updates and self.updates % self.cfg.actor_update_every == 0:
            expert = batch.expert if self.cfg.bc_weight > 0 else None
            info.update(self._update_actor(hm, batch.vector, batch.action, expert))
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return info

    def pretrain_actor(self, demos: dict[str, np.ndarray]) -> float:
        """One behaviour-cloning step of the actor's deployed action tanh(mean) toward demonstrated actions (the
        warm start before SAC); returns the loss."""
        batch = Batch.from_numpy(demos, self.device)
        mean, log_std = self.actor(self._augment(batch.heightmap), batch.vector)
        loss = bc_loss(mean, batch.action) + regularization(self.actor)
        fit_std = residual_nll(mean.detach(), log_std, batch.action) if self.cfg.bc_pretrain_std else 0.0
        self.actor_opt.zero_grad(set_to_none=True)
        (loss + fit_std).backward()
        self._clip(self.actor)
        self.actor_opt.step()
        return float(loss.detach())

    def _update_critic(self, hm, vec, act, rew, next_hm, next_vec, disc) -> dict[str, float]:
        with torch.no_grad():
            next_action, next_logp = sample_tanh_gaussian(*actor_dist(self.actor, next_hm, next_vec))
            tq1, tq2 = self.critic_target(next_hm, next_vec, next_action)
            next_q = torch.min(tq1, tq2)
            if self.cfg.backup_entropy:
                next_q = next_q - self.alpha * next_logp
            target = rew + disc * next_q
        q1, q2 = self.critic(hm, vec, act)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target) + regularization(self.critic)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.critic)
        self.critic_opt.step()
        return {"critic_loss": loss.item(), "q": q1.mean().item()}

    def _update_actor(self, hm, vec, act=None, expert=None) -> dict[str, float]:
        mean, std = actor_dist(self.actor, hm, vec)
        action, logp = sample_tanh_gaussian(mean, std)
        # A frozen critic: the actor's gradient only needs the path through the action, and autograd then skips
        # the backward through the critic's encoder (weight gradients that the next critic step discarded). One
        # encoder pass over s serves Q(s, pi(s)) here and Q(s, a_expert) in the Q-filter.
        with frozen(self.critic):
            features = self.critic.encode(hm)
            q1, q2 = self.critic.from_features(features, vec, action)
        loss = (self.alpha.detach() * logp - torch.min(q1, q2)).mean() + regularization(self.actor)
        bc = 0.0
        weight = self._bc_weight()
        if expert is not None and act is not None and weight > 0:
            mask = self._bc_mask(features, vec, act, expert, torch.min(q1, q2).detach())
            if float(mask.sum()) > 0:
                bc = bc_loss(mean, act, mask)
                loss = loss + weight * bc
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.actor)
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": loss.item(), "alpha": self.alpha.item(), "entropy": -logp.mean().item(),
                "bc_loss": float(bc.detach()) if torch.is_tensor(bc) else bc}

    def _bc_weight(self) -> float:
        if self.cfg.bc_decay_updates <= 0:
            return self.cfg.bc_weight
        return self.cfg.bc_weight * max(0.0, 1.0 - self.updates / self.cfg.bc_decay_updates)

    @torch.no_grad()
    def _bc_mask(self, features, vec, act, expert, q_policy) -> torch.Tensor:
        """The expert samples the BC term pulls on: all of them, or (Q-filter) those whose demonstrated action the
        critic values above the policy's own; ``features`` = ``self.critic.encode(hm)``."""
        if not self.cfg.bc_filter:
            return expert
        q_demo = torch.min(*self.critic.from_features(features, vec, act))
        return expert * (q_demo > q_policy).float()

    def _clip(self, module: nn.Module) -> None:
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.critic_target}

    def state_dict(self) -> dict[str, Any]:
        return {"actor": module_state(self.actor), "critic": module_state(self.critic),
                "critic_target": module_state(self.critic_target), "log_alpha": self.log_alpha.detach().cpu(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "updates": self.updates,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in (("actor", self.actor), ("critic", self.critic), ("critic_target", self.critic_target)):
            load_module_state(module, state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].to(self.device))
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
