"""``NetworkConfig``: which network family, group and sizes an actor or critic is built with."""

from __future__ import annotations

from dataclasses import dataclass, replace

from robot_stack.symmetry import Group, GroupError

FAMILIES = ("relaxed", "relaxed_steerable", "exact", "cnn", "cnn_aug")
EQUIVARIANT_FAMILIES = ("relaxed", "relaxed_steerable", "exact")
WIDTH_MATCHES = ("channels", "params")
ENDS = ("pool", "valid")


class NetworkError(ValueError):
    """A network config, input or checkpoint that cannot be used; the message names the bad value."""


@dataclass
class NetworkConfig:
    """Network family and sizes (docs/networks.md).

    ``family``: ``relaxed`` = relaxed group convolution (L filter banks, relaxed weights w_l(h)),
    ``relaxed_steerable`` = relaxed steerable convolution (escnn basis, coefficients per kernel position),
    ``exact`` = escnn R2Conv on regular fields, ``cnn`` = plain CNN, ``cnn_aug`` = the same plain CNN,
    trained with random group-element augmentation (``policies.data.rotate_batch``).
    ``widths``: per conv block, the number of regular fields (equivariant families). The CNN families use
    ``widths * |G|`` channels (``width_match="channels"``) or ``widths * sqrt(|G|)`` channels
    (``width_match="params"``, about the same parameter count as ``exact``).
    ``end``: how the last map becomes the head's features: ``pool`` = a global max over space (blind to where
    things are), ``valid`` = one more conv of ``widths[-1]`` fields whose kernel is the whole last map, down to
    1x1 (position-aware, and equivariant in the equivariant families, as the published C8 encoder ends).
    ``critic_family``: the critics' (and IQL's value network's) family when it differs from the actor's, e.g. an
    equivariant actor with a plain critic (the actor/critic ablation of the equivariant offline RL paper); empty:
    the same as ``family``. Every other setting is shared.
    """

    family: str = "relaxed"
    group: str = "C8"
    # Five blocks so that a 64 or 128 px heightmap ends as a 4x4 (8x8) map whose receptive field covers the
    # whole workspace: a policy must relate the gripper to objects anywhere in view.
    widths: tuple[int, ...] = (2, 4, 8, 8, 8)
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 3)
    hidden: int = 8  # regular fields (or |G|*hidden channels for the CNN) in the head's hidden layer
    filter_banks: int = 2  # L, relaxed group convolution only
    alpha: float = 1e-4  # regulariser weight for the relaxed weights / coefficients
    width_match: str = "channels"
    end: str = "pool"
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    critic_family: str = ""

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)
        if self.family not in FAMILIES:
            raise NetworkError(f"unknown network family {self.family!r}; valid families: {', '.join(FAMILIES)}")
        if self.critic_family and self.critic_family not in FAMILIES:
            raise NetworkError(f"unknown critic_family {self.critic_family!r}; valid families: {', '.join(FAMILIES)} "
                               f"(or empty: the actor's)")
        if self.critic_family == self.family:
            self.critic_family = ""  # one spelling of "the actor's family", so that equal networks compare equal
        try:
            Group.parse(self.group)
        except GroupError as exc:
            raise NetworkError(f"network group: {exc}") from exc
        if not self.widths or any(w < 1 for w in self.widths):
            raise NetworkError(f"widths must be a non-empty list of positive integers, got {list(self.widths)}")
        if len(self.kernel_sizes) != len(self.widths):
            raise NetworkError(f"kernel_sizes {list(self.kernel_sizes)} must have one entry per width "
                               f"{list(self.widths)}")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise NetworkError(f"kernel sizes must be odd positive integers (centred filters), got "
                               f"{list(self.kernel_sizes)}")
        if self.hidden < 1 or self.filter_banks < 1:
            raise NetworkError(f"hidden and filter_banks must be >= 1, got {self.hidden}, {self.filter_banks}")
        if self.alpha < 0:
            raise NetworkError(f"alpha must be >= 0, got {self.alpha}")
        if self.width_match not in WIDTH_MATCHES:
            raise NetworkError(f"unknown width_match {self.width_match!r}; valid: {', '.join(WIDTH_MATCHES)}")
        if self.end not in ENDS:
            raise NetworkError(f"unknown end {self.end!r}; valid: {', '.join(ENDS)}")
        if self.log_std_min >= self.log_std_max:
            raise NetworkError(f"log_std_min {self.log_std_min} must be < log_std_max {self.log_std_max}")

    @property
    def group_obj(self) -> Group:
        return Group.parse(self.group)

    @property
    def equivariant(self) -> bool:
        return self.family in EQUIVARIANT_FAMILIES

    def critic_config(self) -> NetworkConfig:
        """The config the critics are built with: this one, in ``critic_family`` when that is set."""
        return replace(self, family=self.critic_family or self.family)

    def pool_plan(self, size: int) -> tuple[bool, ...]:
        """Whether a 2x2 max-pool follows each conv block, for a ``size`` px input.

        A pool follows every block but the last while the map is even-sized (a 2x2 pool of an odd-sized map
        drops a row and would break exact 90-degree equivariance) and at least 4 px; 84 px, for instance,
        pools twice (84 -> 42 -> 21) and keeps 21 px afterwards.
        """
        plan = []
        for i in range(len(self.widths)):
            pool = i < len(self.widths) - 1 and size % 2 == 0 and size >= 4
            plan.append(pool)
            size = size // 2 if pool else size
        return tuple(plan)

    def final_size(self, size: int) -> int:
        """Side of the last conv block's map for a ``size`` px input (the ``valid`` end's kernel)."""
        for pool in self.pool_plan(size):
            size = size // 2 if pool else size
        return size

    def to_dict(self) -> dict:
        return {"family": self.family, "group": self.group, "widths": list(self.widths),
                "kernel_sizes": list(self.kernel_sizes), "hidden": self.hidden,
                "filter_banks": self.filter_banks, "alpha": self.alpha, "width_match": self.width_match,
                "end": self.end,
                "log_std_min": self.log_std_min, "log_std_max": self.log_std_max, "critic_family": self.critic_family}

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise NetworkError(f"NetworkConfig: unknown keys {unknown}; valid keys: {sorted(valid)}")
        return cls(**data)
