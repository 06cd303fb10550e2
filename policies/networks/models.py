"""Actor and critic on the ``policies.networks`` contract (docs/ARCHITECTURE.md, "Networks")."""

from __future__ import annotations

import copy
import dataclasses

import torch
from escnn import nn as enn
from torch import nn

from robot_stack.specs import PolicySpec

from .config import NetworkConfig, NetworkError
from .encoders import CNNEncoder, EquivariantEncoder, EquivariantHead, MLPHead, check_size, cnn_channels
from .groups import action_representation, gspace_for

ACTION_DIM = 5


def _encoder(spec: PolicySpec, cfg: NetworkConfig) -> nn.Module:
    size = spec.observation.heightmap_size
    check_size(size, cfg)
    channels = spec.observation.heightmap_channels
    return EquivariantEncoder(channels, cfg, size) if cfg.equivariant else CNNEncoder(channels, cfg, size)


def _check_action_spec(spec: PolicySpec) -> None:
    if spec.action.dim != ACTION_DIM:
        raise NetworkError(f"networks produce {ACTION_DIM} actions (dx, dy, dz, dtheta, gripper), the spec has "
                           f"{spec.action.dim}")


def clone(module: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works in eval mode: escnn's R2Conv keeps its expanded filter as a non-leaf
    buffer in eval mode, which deepcopy refuses; the copy is made in train mode and both get the original mode.
    Use it for SAC target networks."""
    mode = module.training
    module.train(True)
    twin = copy.deepcopy(module)
    module.train(mode)
    return twin.train(mode)


class _Net(nn.Module):
    """What actor and critic share: spec, config, encoder, input checks."""

    def __init__(self, spec: PolicySpec, cfg: NetworkConfig) -> None:
        super().__init__()
        _check_action_spec(spec)
        self.cfg = cfg
        self.spec = dataclasses.replace(spec, group=cfg.group, family=cfg.family)
        self.size = spec.observation.heightmap_size
        self.channels = spec.observation.heightmap_channels
        self.vector_dim = spec.observation.vector_dim
        self.encoder = _encoder(spec, cfg)

    @property
    def family(self) -> str:
        return self.cfg.family

    def _check(self, heightmap: torch.Tensor, vector: torch.Tensor, action: torch.Tensor | None = None) -> None:
        want = (self.channels, self.size, self.size)
        if heightmap.ndim != 4 or tuple(heightmap.shape[1:]) != want:
            raise NetworkError(f"heightmap must have shape [B, {', '.join(map(str, want))}] (from the PolicySpec), "
                               f"got {list(heightmap.shape)}")
        if vector.ndim != 2 or vector.shape[1] != self.vector_dim or vector.shape[0] != heightmap.shape[0]:
            raise NetworkError(f"vector must have shape [{heightmap.shape[0]}, {self.vector_dim}] (the non-heightmap "
                               f"fields {list(self.spec.observation.names[1:])} concatenated), got "
                               f"{list(vector.shape)}")
        if action is not None and (action.ndim != 2 or tuple(action.shape) != (heightmap.shape[0], ACTION_DIM)):
            raise NetworkError(f"action must have shape [{heightmap.shape[0]}, {ACTION_DIM}], got "
                               f"{list(action.shape)}")

    def regularization(self) -> torch.Tensor:
        """alpha * sum of the relaxed layers' regularisers (0 for exact and CNN families)."""
        layers = self.encoder.relaxed_layers() if isinstance(self.encoder, EquivariantEncoder) else []
        if not layers:
            return torch.zeros(())
        return self.cfg.alpha * torch.stack([m.regularization() for m in layers]).sum()

    def exact_counterpart(self) -> _Net:
        """A copy with every relaxed layer replaced by its exact escnn projection (family ``exact``)."""
        if self.cfg.family not in ("relaxed", "relaxed_steerable"):
            raise NetworkError(f"exact_counterpart needs a relaxed family, this network is {self.cfg.family!r}")
        twin = clone(self)
        twin.encoder.make_exact()
        twin.cfg = dataclasses.replace(self.cfg, family="exact")
        twin.spec = dataclasses.replace(self.spec, family="exact")
        return twin


class Actor(_Net):
    """``forward(heightmap [B,C,S,S], vector [B,k]) -> (mean [B,5] pre-tanh, log_std [B,5])``.

    Equivariant families: (dx, dy) rotate with the input, dtheta flips sign under reflections, dz, gripper
    and log_std are invariant (an escnn representation built from ``act_on_action``).
    """

    def __init__(self, spec: PolicySpec, cfg: NetworkConfig) -> None:
        super().__init__(spec, cfg)
        in_dim = self.encoder.out_dim + self.vector_dim
        if cfg.equivariant:
            gspace = gspace_for(cfg.group)
            in_type = self.encoder.out_type + enn.FieldType(gspace, [gspace.trivial_repr] * self.vector_dim)
            out_type = enn.FieldType(gspace, [action_representation(cfg.group)]
                                     + [gspace.trivial_repr] * ACTION_DIM)
            self.head = EquivariantHead(in_type, cfg.hidden, out_type)
        else:
            self.head = MLPHead(in_dim, cnn_channels(cfg, cfg.hidden), 2 * ACTION_DIM)

    def forward(self, heightmap: torch.Tensor, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(heightmap, vector)
        out = self.head(torch.cat([self.encoder(heightmap), vector], dim=1))
        mean, log_std = out[:, :ACTION_DIM], out[:, ACTION_DIM:]
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)


class Critic(_Net):
    """``forward(heightmap, vector, action [B,5]) -> (q1, q2)`` each [B,1], or one [B,1] when ``twin=False``.

    The twin Q heads share one encoder. Equivariant families: Q(g s, g a) = Q(s, a).
    """

    def __init__(self, spec: PolicySpec, cfg: NetworkConfig, twin: bool = True) -> None:
        super().__init__(spec, cfg)
        self.twin = twin
        n_heads = 2 if twin else 1
        if cfg.equivariant:
            gspace = gspace_for(cfg.group)
            in_type = (self.encoder.out_type + enn.FieldType(gspace, [gspace.trivial_repr] * self.vector_dim)
                       + enn.FieldType(gspace, [action_representation(cfg.group)]))
            out_type = enn.FieldType(gspace, [gspace.trivial_repr])
            self.heads = nn.ModuleList([EquivariantHead(in_type, cfg.hidden, out_type) for _ in range(n_heads)])
        else:
            in_dim = self.encoder.out_dim + self.vector_dim + ACTION_DIM
            hidden = cnn_channels(cfg, cfg.hidden)
            self.heads = nn.ModuleList([MLPHead(in_dim, hidden, 1, ACTION_DIM) for _ in range(n_heads)])

    def forward(self, heightmap: torch.Tensor, vector: torch.Tensor, action: torch.Tensor):
        self._check(heightmap, vector, action)
        x = torch.cat([self.encoder(heightmap), vector, action], dim=1)
        qs = tuple(head(x) for head in self.heads)
        return qs if self.twin else qs[0]

    def encode(self, heightmap: torch.Tensor) -> torch.Tensor:
        """The pooled heightmap features [B, F] that ``forward`` computes first; with ``q_from_features`` it lets a
        caller evaluate many actions per state (CQL's sampled actions) with one encoder pass per state."""
        want = (self.channels, self.size, self.size)
        if heightmap.ndim != 4 or tuple(heightmap.shape[1:]) != want:
            raise NetworkError(f"heightmap must have shape [B, {', '.join(map(str, want))}] (from the PolicySpec), "
                               f"got {list(heightmap.shape)}")
        return self.encoder(heightmap)

    def q_from_features(self, features: torch.Tensor, vector: torch.Tensor, action: torch.Tensor):
        """``forward`` after ``encode``: ``q_from_features(encode(h), v, a) == forward(h, v, a)``. ``features`` may
        be repeated rows of ``encode``'s output (e.g. ``repeat_interleave``) to pair one state with many actions."""
        n = features.shape[0]
        if features.ndim != 2 or features.shape[1] != self.encoder.out_dim:
            raise NetworkError(f"features must have shape [B, {self.encoder.out_dim}] (Critic.encode), got "
                               f"{list(features.shape)}")
        if vector.shape != (n, self.vector_dim) or action.shape != (n, ACTION_DIM):
            raise NetworkError(f"vector and action must have shapes [{n}, {self.vector_dim}] and [{n}, {ACTION_DIM}], "
                               f"got {list(vector.shape)} and {list(action.shape)}")
        x = torch.cat([features, vector, action], dim=1)
        qs = tuple(head(x) for head in self.heads)
        return qs if self.twin else qs[0]


def build_actor(spec: PolicySpec, cfg: NetworkConfig) -> Actor:
    """The actor for ``cfg.family`` / ``cfg.group``; sizes from ``spec`` (``cfg`` wins over spec.family/group)."""
    return Actor(spec, cfg)


def build_critic(spec: PolicySpec, cfg: NetworkConfig, twin: bool = True) -> Critic:
    return Critic(spec, cfg, twin)
