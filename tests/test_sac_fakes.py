"""A tiny coordinate-CNN actor/critic for the SAC learning test (no tests live here).

The families of ``policies.networks`` end in a global max-pool, so on the toy task (an absolute
reach) they need far more updates than a CPU test can afford; SAC itself is network-agnostic, and
this small net with coordinate channels lets the test check SAC + replay + loop in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class NetworkConfig:
    """The real config's keys (policies/networks/config.py); the fake uses fixed small sizes."""

    family: str = "cnn"
    group: str = "C4"
    widths: tuple[int, ...] = (2, 4, 8)
    kernel_sizes: tuple[int, ...] = (5, 3, 3)
    hidden: int = 8
    filter_banks: int = 2
    alpha: float = 1e-4
    width_match: str = "channels"
    channels: int = 8
    mlp: int = 64


def _encoder(spec, cfg: NetworkConfig) -> tuple[nn.Module, int]:
    c, s = spec.observation.heightmap_channels, spec.observation.heightmap_size
    enc = nn.Sequential(nn.Conv2d(c + 2, cfg.channels, 3, 2, 1), nn.ReLU(),
                        nn.Conv2d(cfg.channels, cfg.channels, 3, 2, 1), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        width = enc(torch.zeros(1, c + 2, s, s)).shape[1]
    return enc, width


def _with_coords(hm: torch.Tensor) -> torch.Tensor:
    b, _, h, w = hm.shape
    ys = torch.linspace(-1, 1, h, device=hm.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=hm.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([hm * 10.0, xs, ys], dim=1)


class CoordActor(nn.Module):
    def __init__(self, spec, cfg: NetworkConfig) -> None:
        super().__init__()
        self.enc, width = _encoder(spec, cfg)
        self.head = nn.Sequential(nn.Linear(width + spec.observation.vector_dim, cfg.mlp), nn.ReLU(),
                                  nn.Linear(cfg.mlp, 2 * spec.action.dim))

    def forward(self, hm, vec):
        mean, log_std = self.head(torch.cat([self.enc(_with_coords(hm)), vec], -1)).chunk(2, -1)
        return mean, log_std


class CoordCritic(nn.Module):
    def __init__(self, spec, cfg: NetworkConfig) -> None:
        super().__init__()
        self.enc, width = _encoder(spec, cfg)
        inp = width + spec.observation.vector_dim + spec.action.dim
        self.q1 = nn.Sequential(nn.Linear(inp, cfg.mlp), nn.ReLU(), nn.Linear(cfg.mlp, 1))
        self.q2 = nn.Sequential(nn.Linear(inp, cfg.mlp), nn.ReLU(), nn.Linear(cfg.mlp, 1))

    def forward(self, hm, vec, act):
        x = torch.cat([self.enc(_with_coords(hm)), vec, act], -1)
        return self.q1(x), self.q2(x)


def tiny_agent(spec, sac_cfg, seed: int = 0):
    """A SAC agent on the coordinate CNN above: the learning test checks SAC and the loop, not a family."""
    from policies.sac import SAC, TwinCritic

    torch.manual_seed(seed)
    cfg = NetworkConfig()
    return SAC(spec, sac_cfg, CoordActor(spec, cfg), TwinCritic(CoordCritic(spec, cfg), None), "cpu", seed)
