"""Stand-in networks for the SAC tests, used only while ``policies.networks`` has not landed.

``install()`` registers a tiny CNN actor/critic as ``policies.networks`` when the real module is
missing and returns whether the fake is in use. No tests live here.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class NetworkConfig:
    family: str = "cnn"
    group: str = "C4"
    channels: int = 8
    hidden: int = 64


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


class FakeActor(nn.Module):
    def __init__(self, spec, cfg: NetworkConfig) -> None:
        super().__init__()
        self.enc, width = _encoder(spec, cfg)
        self.head = nn.Sequential(nn.Linear(width + spec.observation.vector_dim, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, 2 * spec.action.dim))

    def forward(self, hm, vec):
        mean, log_std = self.head(torch.cat([self.enc(_with_coords(hm)), vec], -1)).chunk(2, -1)
        return mean, log_std


class FakeCritic(nn.Module):
    def __init__(self, spec, cfg: NetworkConfig) -> None:
        super().__init__()
        self.enc, width = _encoder(spec, cfg)
        inp = width + spec.observation.vector_dim + spec.action.dim
        self.q1 = nn.Sequential(nn.Linear(inp, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        self.q2 = nn.Sequential(nn.Linear(inp, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))

    def forward(self, hm, vec, act):
        x = torch.cat([self.enc(_with_coords(hm)), vec, act], -1)
        return self.q1(x), self.q2(x)


def install() -> bool:
    try:
        real = importlib.import_module("policies.networks")
    except ImportError:
        real = None
    if real is not None and hasattr(real, "build_actor") and real.__name__ == "policies.networks":
        return False
    module = types.ModuleType("policies.networks")
    module.NetworkConfig = NetworkConfig
    module.build_actor = FakeActor
    module.build_critic = FakeCritic
    sys.modules["policies.networks"] = module
    return True
