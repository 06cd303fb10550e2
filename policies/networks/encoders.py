"""Encoders (heightmap -> pooled features) and heads (features -> outputs) for every family.

Layout, the same for every family: ``len(widths)`` blocks of [conv k x k (stride 1, 'same' padding), ReLU],
a 2x2 max-pool between blocks while the map is even-sized (``NetworkConfig.pool_plan``), then the end
(``NetworkConfig.end``): a global max over space (``pool``), or a valid conv whose kernel covers the whole last map,
down to 1x1 (``valid``: the features then say where things are relative to the centre). No ReLU follows it: the
head's first layer does, and a ReLU there left every feature dead at init on a plain scene (seen in a test). Stride-1
convolutions, even-sized pools and either end keep a 90-degree rotation or a mirror of the input an exact
permutation of every feature map (the valid conv's kernel grid maps onto itself about its centre).
"""

from __future__ import annotations

import math

import torch
from escnn import nn as enn
from torch import nn

from .config import NetworkConfig, NetworkError
from .groups import gspace_for
from .layers import RelaxedGroupConv, RelaxedSteerableConv, channels_last
from .traversal import submodules


class GlobalMaxPool(nn.Module):
    """[B, C, H, W] -> [B, C]; invariant to any permutation of the pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1))


class Squeeze(nn.Module):
    """[B, C, 1, 1] -> [B, C]: the valid end's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


MIN_SIZE = 8


def check_size(size: int, cfg: NetworkConfig) -> None:
    if size < MIN_SIZE:
        raise NetworkError(
            f"heightmap size {size} cannot be taken by a network with {len(cfg.widths)} conv blocks: it must be at "
            f"least {MIN_SIZE} px; use e.g. 64, 84 or 128")


def cnn_channels(cfg: NetworkConfig, fields: int) -> int:
    """Channels of a CNN layer that stands for ``fields`` regular fields (docs/networks.md)."""
    order = cfg.group_obj.order
    scale = order if cfg.width_match == "channels" else math.sqrt(order)
    return max(1, int(round(fields * scale)))


class CNNEncoder(nn.Module):
    def __init__(self, in_channels: int, cfg: NetworkConfig, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        pools = cfg.pool_plan(size)
        for i, (w, k) in enumerate(zip(cfg.widths, cfg.kernel_sizes, strict=True)):
            ch = cnn_channels(cfg, w)
            layers += [nn.Conv2d(prev, ch, k, padding=k // 2), nn.ReLU()]
            if pools[i]:
                layers.append(nn.MaxPool2d(2))
            prev = ch
        self.body = nn.Sequential(*layers)
        if cfg.end == "valid":
            final = cfg.final_size(size)
            self.pool = nn.Sequential(nn.Conv2d(prev, prev, final), Squeeze())
        else:
            self.pool = GlobalMaxPool()
        self.out_dim = prev

    def forward(self, heightmap: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(channels_last(heightmap)))

    def stages(self, heightmap: torch.Tensor) -> list[torch.Tensor]:
        outs, x = [], heightmap
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outs.append(x)
        return outs

    def export(self) -> nn.Module:
        """Plain torch modules for ONNX; they share this encoder's layers (clone the network first)."""
        return nn.Sequential(*list(self.body), self.pool)


def _equivariant_conv(family: str, in_type: enn.FieldType, fields: int, k: int, cfg: NetworkConfig,
                      padding: int | None = None):
    gspace = in_type.gspace
    padding = k // 2 if padding is None else padding
    if family == "exact":
        out_type = enn.FieldType(gspace, [gspace.regular_repr] * fields)
        return enn.R2Conv(in_type, out_type, k, padding=padding)
    if family == "relaxed":
        return RelaxedGroupConv(in_type, fields, k, cfg.filter_banks, padding)
    return RelaxedSteerableConv(in_type, fields, k, padding)


class EquivariantEncoder(nn.Module):
    """escnn stack on regular fields; the convs are exact (R2Conv) or relaxed."""

    def __init__(self, in_channels: int, cfg: NetworkConfig, size: int) -> None:
        super().__init__()
        self.gspace = gspace_for(cfg.group)
        pools = cfg.pool_plan(size)
        self.in_type = enn.FieldType(self.gspace, [self.gspace.trivial_repr] * in_channels)
        blocks = []
        prev = self.in_type
        for i, (w, k) in enumerate(zip(cfg.widths, cfg.kernel_sizes, strict=True)):
            conv = _equivariant_conv(cfg.family, prev, w, k, cfg)
            mods = [conv, enn.ReLU(conv.out_type)]
            if pools[i]:
                mods.append(enn.PointwiseMaxPool2D(conv.out_type, 2))
            blocks.append(enn.SequentialModule(*mods))
            prev = conv.out_type
        if cfg.end == "valid":
            conv = _equivariant_conv(cfg.family, prev, cfg.widths[-1], cfg.final_size(size), cfg, padding=0)
            blocks.append(enn.SequentialModule(conv))
            prev = conv.out_type
        self.blocks = nn.ModuleList(blocks)
        self.out_type = prev
        self.out_dim = prev.size
        self.pool = Squeeze() if cfg.end == "valid" else GlobalMaxPool()

    def forward(self, heightmap: torch.Tensor) -> torch.Tensor:
        x = enn.GeometricTensor(channels_last(heightmap), self.in_type)
        for block in self.blocks:
            x = block(x)
        return self.pool(x.tensor)

    def stages(self, heightmap: torch.Tensor) -> list[enn.GeometricTensor]:
        outs, x = [], enn.GeometricTensor(heightmap, self.in_type)
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    def relaxed_layers(self) -> list[nn.Module]:
        return [m for m in submodules(self) if isinstance(m, RelaxedGroupConv | RelaxedSteerableConv)]

    def make_exact(self) -> None:
        """Replace every relaxed conv by its exact projection (``to_exact``)."""
        for block in self.blocks:
            for name, mod in list(block._modules.items()):
                if isinstance(mod, RelaxedGroupConv | RelaxedSteerableConv):
                    block._modules[name] = mod.to_exact()

    def export(self) -> nn.Module:
        """Plain torch modules for ONNX (escnn ``.export()``, relaxed layers folded); puts this encoder in eval
        mode, so export a clone (``policies.networks.clone``)."""
        layers: list[nn.Module] = []
        for block in self.blocks:
            for mod in block._modules.values():
                layers.append(_export_module(mod))
        return nn.Sequential(*layers, type(self.pool)())


def _export_module(mod: nn.Module) -> nn.Module:
    if isinstance(mod, enn.PointwiseMaxPool2D):
        return nn.MaxPool2d(mod.kernel_size, mod.stride, mod.padding)
    return mod.export()


class MLPHead(nn.Module):
    """Plain head for the CNN families: [features, vector(, action)] -> outputs (ELU like the escnn head).

    ``action_dim > 0`` (the critic): the last ``action_dim`` inputs also enter through a bilinear term
    ``s^T W a`` with s the other inputs. Through concatenation alone the encoder gets no first-order gradient
    from a target like Q = a . direction(s) (its mean over actions is 0 in every state), and the critic sat on
    that plateau for ~2000 updates on toy reach (docs/results/offline.md); the escnn head does not need it, as
    its regular hidden fields pair each orientation of the features with the action rotated to it.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, action_dim: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, out_dim))
        self.action_dim = action_dim
        self.bilinear = nn.Bilinear(in_dim - action_dim, action_dim, out_dim) if action_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear is None:
            return self.net(x)
        k = self.action_dim
        return self.net(x) + self.bilinear(x[:, :-k], x[:, -k:])

    def export(self) -> nn.Module:
        return self.net if self.bilinear is None else self


class EquivariantHead(nn.Module):
    """escnn 1x1 convs on a single point: input fields -> regular hidden (ELU, never dead at init) -> output
    fields (exact in every equivariant family)."""

    def __init__(self, in_type: enn.FieldType, hidden: int, out_type: enn.FieldType) -> None:
        super().__init__()
        gspace = in_type.gspace
        hid = enn.FieldType(gspace, [gspace.regular_repr] * hidden)
        self.in_type, self.out_type = in_type, out_type
        self.net = enn.SequentialModule(enn.R2Conv(in_type, hid, 1), enn.ELU(hid), enn.R2Conv(hid, hid, 1),
                                        enn.ELU(hid), enn.R2Conv(hid, out_type, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(enn.GeometricTensor(x[:, :, None, None], self.in_type))
        return y.tensor[:, :, 0, 0]

    def export(self) -> nn.Module:
        mods = [m.export() for m in self.net._modules.values()]
        return nn.Sequential(nn.Unflatten(1, (self.in_type.size, 1, 1)), *mods, nn.Flatten(1))
