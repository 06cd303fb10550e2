"""Networks: relaxed group / relaxed steerable / exact escnn / CNN actors and critics (docs/networks.md)."""

from .config import EQUIVARIANT_FAMILIES, FAMILIES, NetworkConfig, NetworkError
from .groups import transform_actions, transform_images
from .models import Actor, Critic, build_actor, build_critic, clone

__all__ = ["EQUIVARIANT_FAMILIES", "FAMILIES", "Actor", "Critic", "NetworkConfig", "NetworkError",
           "build_actor", "build_critic", "clone", "transform_actions", "transform_images"]
