"""The bridge between robot_stack.symmetry's conventions and escnn's.

escnn acts on a tensor ``[B, C, H, W]`` with its own orientation: measured (and asserted in
tests/test_networks.py) on the image grid, our element ``(flip, k)`` — R(2 pi k / N) after the x -> -x
mirror, with ``hm[row, col]``, col ~ +x, row ~ +y — moves pixels exactly like escnn's element
``(flip, -k mod N)``. Every escnn representation used for outputs is built from that map, so the
networks are equivariant in *our* convention: ``f(act_on_image(g, x)) == act_on_action(g, f(x))``.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from robot_stack.symmetry import Group, GroupElement

from .config import NetworkError


@cache
def gspace_for(name: str):
    """escnn gspace for C_N (``rot2dOnR2``) or D_N (``flipRot2dOnR2``, mirror axis chosen by escnn)."""
    from escnn import gspaces

    group = Group.parse(name)
    if group.has_reflection:
        return gspaces.flipRot2dOnR2(group.n)
    return gspaces.rot2dOnR2(group.n)


def escnn_element(gspace, g: GroupElement):
    """escnn's element that moves heightmap pixels like our ``g`` (see the module docstring)."""
    fiber = gspace.fibergroup
    dihedral = type(fiber).__name__ == "DihedralGroup"
    expected = 2 * g.n if dihedral else g.n
    if fiber.order() != expected or (g.flip and not dihedral):
        raise NetworkError(f"element {g} does not belong to escnn group {fiber}")
    k = (-g.k) % g.n
    return fiber.element((int(g.flip), k), "int") if dihedral else fiber.element(k, "int")


def action_matrix(g: GroupElement) -> np.ndarray:
    """5x5 float64 matrix of ``act_on_action(g, .)`` on (dx, dy, dz, dtheta, gripper) column vectors."""
    mat = np.eye(5)
    mat[0:2, 0:2] = g.matrix
    if g.flip:
        mat[3, 3] = -1.0
    return mat


@cache
def action_representation(name: str):
    """escnn representation of the action (dx, dy, dz, dtheta, gripper) in our convention."""
    from escnn.group.representation import build_from_discrete_group_representation

    gspace = gspace_for(name)
    group = Group.parse(name)
    mats = {escnn_element(gspace, g): action_matrix(g) for g in group.elements}
    return build_from_discrete_group_representation(mats, f"action_{name}", gspace.fibergroup, [])


def transform_images(g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """``act_on_image`` for a torch batch ``[..., S, S]``: exact for multiples of 90 deg and the mirror,
    bilinear with zero fill otherwise (same sampling as robot_stack.symmetry)."""
    out = x.flip(-1) if g.flip else x
    if (4 * g.k) % g.n == 0:
        return torch.rot90(out, k=-((4 * g.k) // g.n), dims=(-2, -1))
    return _rotate_bilinear(out, g.angle)


def _rotate_bilinear(x: torch.Tensor, angle: float) -> torch.Tensor:
    size = x.shape[-1]
    c, s = math.cos(angle), math.sin(angle)
    # output (col, row) -> source (c*x + s*y, -s*x + c*y) about the centre, in normalised [-1, 1] coordinates
    theta = torch.tensor([[c, s, 0.0], [-s, c, 0.0]], dtype=x.dtype, device=x.device)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, size, size)
    grid = F.affine_grid(theta.expand(flat.shape[0], 2, 3), list(flat.shape), align_corners=True)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, size, size)


def transform_actions(g: GroupElement, a: torch.Tensor) -> torch.Tensor:
    """``act_on_action`` for a torch batch ``[..., 5]``."""
    mat = torch.as_tensor(action_matrix(g), dtype=a.dtype, device=a.device)
    return a @ mat.T
