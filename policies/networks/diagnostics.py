"""How symmetric is a network? Equivariance error per layer and end to end, and the relaxed weights.

Equivariance error (docs/ARCHITECTURE.md): ``E_x max_g |f(rho_in(g) x) - rho_out(g) f(x)|`` with |.| the max-abs over
the output, averaged over the batch. By default only elements whose action on the image is an exact pixel
permutation are used (multiples of 90 degrees and mirrors): for the others (45 deg in C8) rotating a pixel
grid interpolates, and the error would measure the interpolation rather than the network.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robot_stack.symmetry import Group, GroupElement

from .encoders import EquivariantEncoder
from .groups import escnn_element, gspace_for, transform_actions, transform_images
from .layers import RelaxedGroupConv, RelaxedSteerableConv
from .models import Actor, Critic


def check_elements(group: Group, pixel_exact_only: bool = True) -> list[GroupElement]:
    return [g for g in group.elements if not pixel_exact_only or (4 * g.k) % g.n == 0]


def _per_sample_max(diff: torch.Tensor) -> torch.Tensor:
    return diff.abs().reshape(diff.shape[0], -1).amax(dim=1)


@torch.no_grad()
def equivariance_error(net: Actor | Critic, heightmap: torch.Tensor, vector: torch.Tensor,
                       action: torch.Tensor | None = None, pixel_exact_only: bool = True) -> dict[str, Any]:
    """Whole-network error (actor: mean and log_std; critic: every Q head, invariance) and, for escnn encoders,
    per conv block (relative to each sample's max |feature|). Returns {"network", "per_layer", "per_element"}."""
    group = Group.parse(net.cfg.group)
    elements = check_elements(group, pixel_exact_only)
    base = _outputs(net, heightmap, vector, action)
    per_element, worst = {}, torch.zeros(heightmap.shape[0])
    for g in elements:
        a_g = None if action is None else transform_actions(g, action)
        out = _outputs(net, transform_images(g, heightmap), vector, a_g)
        expected = _act_outputs(net, g, base)
        err = _per_sample_max(out - expected)
        per_element[str(g)] = float(err.mean())
        worst = torch.maximum(worst, err)
    return {"network": float(worst.mean()), "per_layer": _layer_errors(net, heightmap, elements),
            "per_element": per_element}


def _outputs(net: Actor | Critic, hm: torch.Tensor, vec: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
    if isinstance(net, Actor):
        mean, log_std = net(hm, vec)
        return torch.cat([mean, log_std], dim=1)
    if action is None:
        raise ValueError("equivariance_error of a critic needs actions [B, 5]")
    q = net(hm, vec, action)
    return torch.cat(q, dim=1) if isinstance(q, tuple) else q


def _act_outputs(net: Actor | Critic, g: GroupElement, out: torch.Tensor) -> torch.Tensor:
    if isinstance(net, Actor):
        return torch.cat([transform_actions(g, out[:, :5]), out[:, 5:]], dim=1)
    return out  # Q is invariant


def _layer_errors(net: Actor | Critic, heightmap: torch.Tensor, elements: list[GroupElement]) -> list[float]:
    if not isinstance(net.encoder, EquivariantEncoder):
        return []  # a CNN's feature maps carry no group representation to compare with
    gspace = gspace_for(net.cfg.group)
    base = net.encoder.stages(heightmap)
    worst = [torch.zeros(heightmap.shape[0]) for _ in base]
    for g in elements:
        moved = net.encoder.stages(transform_images(g, heightmap))
        for i, (b, m) in enumerate(zip(base, moved, strict=True)):
            expected = b.transform(escnn_element(gspace, g)).tensor
            worst[i] = torch.maximum(worst[i], _per_sample_max(m.tensor - expected))
    scale = [_per_sample_max(b.tensor).clamp_min(1e-12) for b in base]
    return [float((w / s).mean()) for w, s in zip(worst, scale, strict=True)]


def channel_elements(group_name: str) -> list[str]:
    """Our name of the group element that each channel of an escnn regular field stands for."""
    gspace = gspace_for(group_name)
    group = Group.parse(group_name)
    regular = gspace.fibergroup.regular_representation
    names = [""] * group.order
    for g in group.elements:
        column = regular(escnn_element(gspace, g))[:, 0]
        names[int(np.argmax(np.abs(column)))] = str(g)
    return names


def relaxed_weights_report(net: Actor | Critic) -> list[dict[str, Any]]:
    """Per relaxed layer: relaxed weights w_l(h) (group conv) or the spread of the coefficients over kernel
    positions (steerable), and how far from equivariance (0 = exactly equivariant)."""
    if not isinstance(net.encoder, EquivariantEncoder):
        return []
    rows = []
    for i, layer in enumerate(net.encoder.relaxed_layers()):
        entry: dict[str, Any] = {"layer": i, "type": type(layer).__name__}
        if isinstance(layer, RelaxedGroupConv):
            w = layer.relaxed_weights.detach()
            entry.update(kind=layer.kind, elements=channel_elements(net.cfg.group), weights=w.tolist(),
                         init=1.0 / (layer.banks * layer.group_order),
                         spread=float((w.amax(0) - w.amin(0)).max() / w.abs().mean().clamp_min(1e-12)))
        elif isinstance(layer, RelaxedSteerableConv):
            c = layer.coefficients.detach()
            entry.update(spread=float(c.std(-1).mean() / c.abs().mean().clamp_min(1e-12)),
                         regularizer=float(layer.regularization()))
        rows.append(entry)
    return rows
