"""Soft actor-critic over the network families (relaxed / exact / cnn / cnn_aug), in one file.

Reference settings (DESIGN.md §4, equivariant SAC on heightmaps): batch 64, lr 1e-3, gamma 0.99,
tau 1e-2, initial temperature 1e-2, expert episodes seeded, each transition stored with 4 extra
randomly rotated copies. The actor comes from ``policies.networks.build_actor`` (equivariant
(dx, dy), invariant rest + log-std), the twin critics from ``build_critic`` (invariant Q); target
critics are Polyak averages; the temperature is tuned to a target entropy.

Options: ``n_step`` returns (folded into the stored ``discount``, see ``policies.replay_buffer``),
DrQ-style random shift (``random_shift`` pixels of replicate padding), and random-rotation
augmentation of every batch by an element of the policy's group (``rotation_aug``; the CNN
baseline ``cnn_aug`` turns it on, through ``policies.networks.augment_batch``). The relaxed
families' regulariser (``regularization()`` of actor and critic) is added to their losses.
``bc_weight`` > 0 adds a behaviour-cloning term on the expert transitions of each batch, the SACfD
recipe of the equivariant SAC work: ``bc_weight * mean over expert samples of |tanh(mean) - a_expert|^2``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_stack.specs import PolicySpec
from robot_stack.symmetry import Group

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


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
    n_step: int = 1
    random_shift: int = 0  # DrQ pad in pixels; 0 = off
    rotation_aug: bool | None = None  # None = on for the cnn_aug family only
    rotated_copies: int = 4  # extra randomly rotated copies of each stored transition
    actor_update_every: int = 1
    grad_clip: float = 0.0  # 0 = off
    bc_weight: float = 0.0  # SACfD: L2 pull of the actor's mean action toward the expert's on expert samples; 0 = off

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
        if self.random_shift < 0 or self.rotated_copies < 0 or self.bc_weight < 0:
            raise ValueError("sac.random_shift, sac.rotated_copies and sac.bc_weight must be >= 0")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' = CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class TwinCritic(nn.Module):
    """Two Q heads: one critic module that returns ``(q1, q2)``, or two single-head critics."""

    def __init__(self, first: nn.Module, second: nn.Module | None) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, hm: torch.Tensor, vec: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.first(hm, vec, act)
        if self.second is None:
            return out
        return out, self.second(hm, vec, act)


def build_networks(spec: PolicySpec, network: dict[str, Any]) -> tuple[nn.Module, TwinCritic, Any]:
    """Actor and twin critic from ``policies.networks`` for the config mapping ``network``."""
    from policies.networks import NetworkConfig, build_actor, build_critic
    from robot_stack import config

    data = dict(network)
    if "twin" in {f.name for f in fields(NetworkConfig)}:
        data.setdefault("twin", True)
    net_cfg = config.build(NetworkConfig, data, "network")
    actor, critic = build_actor(spec, net_cfg), build_critic(spec, net_cfg)
    if _returns_pair(critic, spec):
        return actor, TwinCritic(critic, None), net_cfg
    return actor, TwinCritic(critic, build_critic(spec, net_cfg)), net_cfg


def _returns_pair(critic: nn.Module, spec: PolicySpec) -> bool:
    zeros = spec.observation.zeros(batch=1)
    hm = torch.from_numpy(zeros["heightmap"])
    vec = torch.zeros(1, spec.observation.vector_dim)
    with torch.no_grad():
        out = critic(hm, vec, torch.zeros(1, spec.action.dim))
    return isinstance(out, tuple | list)


def _regularizer(module: nn.Module) -> torch.Tensor | float:
    """The relaxed layers' pull toward equal weights (``regularization()`` of the networks; 0 if absent)."""
    total: torch.Tensor | float = 0.0
    for m in (module.first, module.second) if isinstance(module, TwinCritic) else (module,):
        if m is not None and hasattr(m, "regularization"):
            total = total + m.regularization().to(next(m.parameters()).device)
    return total


def squash(mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised tanh-Gaussian sample and its log-probability [B]."""
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    std = log_std.exp()
    pre = mean + std * torch.randn_like(mean)
    action = torch.tanh(pre)
    logp = (-0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    logp = logp - (2 * (math.log(2) - pre - F.softplus(-2 * pre))).sum(-1)
    return action, logp


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


class SAC:
    """The agent: networks, optimisers, temperature; ``act``, ``update``, ``state_dict``."""

    def __init__(self, spec: PolicySpec, cfg: SACConfig, actor: nn.Module, critic: TwinCritic,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.spec, self.cfg, self.device = spec, cfg, torch.device(device)
        self.group = Group.parse(spec.group)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = -float(spec.action.dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr or cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr or cfg.lr)
        self.rotation_aug = cfg.rotation_aug if cfg.rotation_aug is not None else spec.family == "cnn_aug"
        self.rng = np.random.default_rng(seed)
        self.updates = 0

    @classmethod
    def create(cls, spec: PolicySpec, cfg: SACConfig, network: dict[str, Any], device: str = "auto",
               seed: int = 0) -> SAC:
        torch.manual_seed(seed)
        actor, critic, _ = build_networks(spec, network)
        return cls(spec, cfg, actor, critic, pick_device(device), seed)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def act(self, heightmap: np.ndarray, vector: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Batched actions in [-1, 1]: ``heightmap [B, C, S, S]``, ``vector [B, k]`` -> ``[B, 5]``."""
        mean, log_std = self.actor(self._tensor(heightmap), self._tensor(vector))
        action = torch.tanh(mean) if deterministic else squash(mean, log_std)[0]
        return action.cpu().numpy()

    def _augment(self, hm: torch.Tensor) -> torch.Tensor:
        return random_shift(hm, self.cfg.random_shift) if self.cfg.random_shift > 0 else hm

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient step on the critics, (every ``actor_update_every``) the actor and the temperature."""
        hm, next_hm = self._tensor(batch["heightmap"]), self._tensor(batch["next_heightmap"])
        vec, next_vec = self._tensor(batch["vector"]), self._tensor(batch["next_vector"])
        act, rew, disc = self._tensor(batch["action"]), self._tensor(batch["reward"]), self._tensor(batch["discount"])
        if self.rotation_aug and self.group.order > 1:
            hm, next_hm, act = self._rotate(hm, next_hm, act)
        hm, next_hm = self._augment(hm), self._augment(next_hm)
        info = self._update_critic(hm, vec, act, rew, next_hm, next_vec, disc)
        self.updates += 1
        if self.updates % self.cfg.actor_update_every == 0:
            expert = self._tensor(batch["expert"]) if self.cfg.bc_weight > 0 and "expert" in batch else None
            info.update(self._update_actor(hm, vec, act, expert))
        self._soft_update()
        return info

    def _rotate(self, hm: torch.Tensor, next_hm: torch.Tensor, act: torch.Tensor):
        """The cnn_aug recipe: one random group element per sample, applied to s, s' and a alike."""
        from policies.networks import augment_batch

        both, act, _ = augment_batch(self.group, torch.cat([hm, next_hm], dim=1), act)
        return both[:, :hm.shape[1]], both[:, hm.shape[1]:], act

    def _update_critic(self, hm, vec, act, rew, next_hm, next_vec, disc) -> dict[str, float]:
        with torch.no_grad():
            next_action, next_logp = squash(*self.actor(next_hm, next_vec))
            tq1, tq2 = self.critic_target(next_hm, next_vec, next_action)
            next_v = torch.min(tq1, tq2).squeeze(-1) - self.alpha * next_logp
            target = rew + disc * next_v
        q1, q2 = self.critic(hm, vec, act)
        loss = F.mse_loss(q1.squeeze(-1), target) + F.mse_loss(q2.squeeze(-1), target) + _regularizer(self.critic)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.critic)
        self.critic_opt.step()
        return {"critic_loss": loss.item(), "q": q1.mean().item()}

    def _update_actor(self, hm, vec, act=None, expert=None) -> dict[str, float]:
        mean, log_std = self.actor(hm, vec)
        action, logp = squash(mean, log_std)
        # A frozen critic: the actor's gradient only needs the path through the action, and autograd then skips
        # the backward through the critic's encoder (weight gradients that the next critic step discarded).
        self.critic.requires_grad_(False)
        try:
            q1, q2 = self.critic(hm, vec, action)
        finally:
            self.critic.requires_grad_(True)
        loss = (self.alpha.detach() * logp - torch.min(q1, q2).squeeze(-1)).mean() + _regularizer(self.actor)
        bc = 0.0
        if expert is not None and act is not None and float(expert.sum()) > 0:
            bc = (((torch.tanh(mean) - act) ** 2).sum(-1) * expert).sum() / expert.sum()
            loss = loss + self.cfg.bc_weight * bc
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

    def _clip(self, module: nn.Module) -> None:
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip)

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.cfg.tau
        for p, tp in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
            tp.lerp_(p, tau)
        for b, tb in zip(self.critic.buffers(), self.critic_target.buffers(), strict=True):
            tb.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().cpu(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "updates": self.updates,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].to(self.device))
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
