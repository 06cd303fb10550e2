"""Behaviour cloning: regress the deployed action tanh(mean) onto the dataset action.

    L = mean_{(s, a) ~ D} || tanh(mu(s)) - a ||^2

With an equivariant actor and rotated batches this is the equivariant BC baseline of the offline RL
comparison. The log-std head is not trained (the deployed policy is deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from policies.core import Batch, check_finite


@dataclass
class BCConfig:
    lr: float = 1e-4
    max_grad_norm: float = 0.0  # 0: no clipping


def bc_loss(mean_pre_tanh: torch.Tensor, action: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error of the deployed action tanh(mean) summed over action dims, averaged over the batch (weighted by
    ``weights`` [B] when given, e.g. a mask of the samples to clone)."""
    per_sample = ((torch.tanh(mean_pre_tanh) - action) ** 2).sum(-1)
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum()


class BC:
    def __init__(self, actor: nn.Module, cfg: BCConfig | None = None, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg or BCConfig()
        self.device = torch.device(device)
        self.actor = actor.to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.lr)
        self.steps = 0

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor}

    def update(self, batch: Batch) -> dict[str, float]:
        mean, _ = self.actor(batch.heightmap, batch.vector)
        loss = bc_loss(mean, batch.action)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.max_grad_norm)
        self.actor_opt.step()
        self.steps += 1
        info = {"bc_loss": loss.item()}
        check_finite(info, f"BC step {self.steps}")
        return info
