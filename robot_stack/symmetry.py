"""The symmetry groups C_N and D_N and how they act on heightmaps, points and actions.

Conventions (docs/ARCHITECTURE.md, "Contracts"), shared by every stage:

* A heightmap ``hm[..., row, col]`` covers the workspace with ``col`` growing with world +x and
  ``row`` growing with world +y, so index space (col, row) has the same handedness as (x, y).
* Element ``g = (flip, k)`` acts as ``R(2*pi*k/N) @ F**flip`` where ``F`` mirrors x -> -x.
* On an action ``(dx, dy, dz, dtheta, gripper)``: (dx, dy) transform as a vector, dz and gripper are
  unchanged, dtheta is unchanged by rotations and negated by the reflection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

GROUP_KINDS = ("C", "D")


class GroupError(ValueError):
    """A group name or element that does not exist."""


@dataclass(frozen=True)
class GroupElement:
    flip: int  # 0 or 1
    k: int  # rotation index in [0, N)
    n: int

    @property
    def angle(self) -> float:
        return 2.0 * math.pi * self.k / self.n

    @property
    def matrix(self) -> np.ndarray:
        """2x2 matrix acting on (x, y) column vectors."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        mirror = np.diag([-1.0, 1.0]) if self.flip else np.eye(2)
        return rot @ mirror

    @property
    def is_identity(self) -> bool:
        return self.k == 0 and self.flip == 0

    def __str__(self) -> str:
        return f"{'F' if self.flip else ''}R{self.k}/{self.n}"


@dataclass(frozen=True)
class Group:
    """C_N (rotations by 2*pi*k/N) or D_N (rotations and the x -> -x mirror)."""

    kind: str
    n: int

    def __post_init__(self) -> None:
        if self.kind not in GROUP_KINDS:
            raise GroupError(f"unknown group kind {self.kind!r}; valid kinds: {', '.join(GROUP_KINDS)}")
        if not isinstance(self.n, int) or self.n < 1:
            raise GroupError(f"group order must be a positive integer, got {self.n!r}")

    @classmethod
    def parse(cls, name: str) -> Group:
        """'C8', 'D4', 'trivial' (= C1)."""
        text = str(name).strip().upper()
        if text in ("TRIVIAL", "C1", "NONE"):
            return cls("C", 1)
        if len(text) >= 2 and text[0] in GROUP_KINDS and text[1:].isdigit():
            return cls(text[0], int(text[1:]))
        raise GroupError(f"unknown group {name!r}; use C<N> or D<N> (e.g. C4, C8, D4) or 'trivial'")

    @property
    def name(self) -> str:
        return f"{self.kind}{self.n}"

    @property
    def has_reflection(self) -> bool:
        return self.kind == "D"

    @cached_property
    def elements(self) -> tuple[GroupElement, ...]:
        flips = (0, 1) if self.has_reflection else (0,)
        return tuple(GroupElement(f, k, self.n) for f in flips for k in range(self.n))

    @property
    def order(self) -> int:
        return len(self.elements)

    def element(self, index: int) -> GroupElement:
        return self.elements[index]

    def __str__(self) -> str:
        return self.name


def act_on_points(g: GroupElement, xy: np.ndarray, center: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Transform points ``xy[..., 2]`` about ``center``."""
    c = np.asarray(center, dtype=np.float64)
    return ((np.asarray(xy, dtype=np.float64) - c) @ g.matrix.T + c).astype(np.asarray(xy).dtype, copy=False)


def act_on_action(g: GroupElement, action: np.ndarray) -> np.ndarray:
    """Transform actions ``[..., 5]`` = (dx, dy, dz, dtheta, gripper); works for any leading shape."""
    a = np.array(action, dtype=np.float32, copy=True)
    a[..., 0:2] = a[..., 0:2] @ g.matrix.T.astype(np.float32)
    if g.flip:
        a[..., 3] = -a[..., 3]
    return a


def act_on_image(g: GroupElement, image: np.ndarray, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """Transform images ``[..., H, W]`` about their centre.

    Exact (a permutation of pixels) for multiples of 90 degrees and the mirror; bilinear
    (``order=1``) or nearest (``order=0``) interpolation otherwise, cells that come from outside
    the image get ``fill``.
    """
    img = np.asarray(image)
    if img.ndim < 2 or img.shape[-1] != img.shape[-2]:
        raise ValueError(f"act_on_image needs square images [..., H, W], got shape {img.shape}")
    out = img[..., :, ::-1] if g.flip else img
    if (4 * g.k) % g.n == 0:
        quarter_turns = (4 * g.k) // g.n
        # rot90 with k=-1 turns (col, row) counter-clockwise because rows grow with +y.
        return np.ascontiguousarray(np.rot90(out, k=-quarter_turns, axes=(-2, -1)))
    return _rotate_interpolated(out, g.angle, order, fill)


def act_on_batch(group: Group, rng: np.random.Generator, action: np.ndarray, *images: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Each sample of a batch acted on by its own random element of ``group``: ``action`` ``[B, 5]`` and every
    image array ``[B, ..., H, W]`` (e.g. the heightmaps of s and s') alike. Returns (action, the element index of
    each sample, the images); the inputs are not changed."""
    picks = rng.integers(group.order, size=len(action))
    action = np.array(action, dtype=np.float32, copy=True)
    out = tuple(np.array(img, copy=True) for img in images)
    for index in np.unique(picks):
        g = group.element(int(index))
        if g.is_identity:
            continue
        rows = picks == index
        action[rows] = act_on_action(g, action[rows])
        for img in out:
            img[rows] = act_on_image(g, img[rows])
    return action, picks, out


def rotate_image(image: np.ndarray, angle: float) -> np.ndarray:
    """Images ``[..., C, H, W]`` rotated about their centre by any ``angle`` (radians), the way a group element of that
    angle acts (``act_on_image``); cells that come from outside take the median of their channel's border, so a
    tiled channel stays constant and a table stays a table."""
    img = np.asarray(image, dtype=np.float32)
    border = np.concatenate([img[..., 0, :], img[..., -1, :], img[..., :, 0], img[..., :, -1]], axis=-1)
    fill = np.median(border, axis=-1)[..., None, None]
    inside = _rotate_interpolated(np.ones(img.shape[-2:], np.float32), angle, 1, 0.0)
    rotated = _rotate_interpolated(img, angle, 1, 0.0)
    return (rotated + (1.0 - inside) * fill).astype(np.float32)


def rotate_action(action: np.ndarray, angle: float) -> np.ndarray:
    """Actions ``[..., 5]`` under a rotation of the world by ``angle``: (dx, dy) rotate, the rest is invariant."""
    a = np.array(action, dtype=np.float32, copy=True)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = a[..., 0].copy(), a[..., 1].copy()
    a[..., 0], a[..., 1] = c * dx - s * dy, s * dx + c * dy
    return a


def _rotate_interpolated(img: np.ndarray, angle: float, order: int, fill: float) -> np.ndarray:
    size = img.shape[-1]
    center = (size - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    # Pull back: the output pixel at p comes from R(-angle) p in the input.
    c, s = math.cos(angle), math.sin(angle)
    x, y = cols - center, rows - center
    src_col = c * x + s * y + center
    src_row = -s * x + c * y + center
    if order == 0:
        return _sample_nearest(img, src_row, src_col, fill)
    return _sample_bilinear(img, src_row, src_col, fill)


def _sample_nearest(img: np.ndarray, r: np.ndarray, c: np.ndarray, fill: float) -> np.ndarray:
    size = img.shape[-1]
    ri, ci = np.rint(r).astype(int), np.rint(c).astype(int)
    inside = (ri >= 0) & (ri < size) & (ci >= 0) & (ci < size)
    out = img[..., np.clip(ri, 0, size - 1), np.clip(ci, 0, size - 1)]
    return np.where(inside, out, np.asarray(fill, dtype=img.dtype))


def _sample_bilinear(img: np.ndarray, r: np.ndarray, c: np.ndarray, fill: float) -> np.ndarray:
    size = img.shape[-1]
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    fr, fc = (r - r0).astype(np.float32), (c - c0).astype(np.float32)
    out = np.zeros(img.shape, dtype=np.float32)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            vals = img[..., np.clip(rr, 0, size - 1), np.clip(cc, 0, size - 1)].astype(np.float32)
            out += np.where(inside, vals, fill) * (wr * wc)
    return out.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32)
