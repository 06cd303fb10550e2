"""Symmetry-breaking variants, selected by ``SimConfig.variant`` (strength by ``variant_strength``).

Each breaks the C4 symmetry of the push task in one way a real cell does; docs/sim.md lists the measured
gap of each (``sim.symmetry.measure_gap``).
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("none", "actuator_bias", "gravity_tilt", "table_friction", "placement", "base_in_view")

# Strength used when the config leaves variant_strength at 0.
DEFAULT_STRENGTH = {
    "none": 0.0,
    "actuator_bias": 0.3,  # +x commands move 1.3x as far, -x commands 0.7x
    "gravity_tilt": 10.0,  # degrees off vertical, towards +x
    "table_friction": 3.0,  # friction coefficient of a patch covering the +x half of the workspace
    "placement": 1.0,  # objects only in the +x half of the workspace (the strength is unused)
    "base_in_view": 0.2,  # metres the arm's base moves towards the workspace, into the camera's view
}


@dataclass(frozen=True)
class Variant:
    name: str
    strength: float

    @classmethod
    def create(cls, name: str, strength: float = 0.0) -> Variant:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; valid variants: {list(VARIANTS)}")
        return cls(name, float(strength) if strength else DEFAULT_STRENGTH[name])

    def bias_dx(self, dx: float) -> float:
        if self.name != "actuator_bias":
            return dx
        return dx * (1.0 + self.strength) if dx > 0 else dx * (1.0 - self.strength)
