"""Build an algorithm by name: ``build_algorithm("iql", spec, network, cfg, device)``.

Every algorithm gets its networks from ``policies.networks`` for the spec and the network config mapping; its own
hyperparameters come from the config dataclass at the top of its file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from policies.bc import BC, BCConfig
from policies.core import Algorithm
from policies.cql import CQL, CQLConfig
from policies.iql import IQL, IQLConfig
from policies.networks import NetworkConfig, build_actor, build_critic
from policies.sac import SAC, SACConfig
from robot_stack import config
from robot_stack.specs import PolicySpec

CONFIGS: dict[str, type] = {"sac": SACConfig, "cql": CQLConfig, "iql": IQLConfig, "bc": BCConfig}
ALGORITHMS = tuple(CONFIGS)


def network_config(spec: PolicySpec, network: dict[str, Any] | NetworkConfig) -> NetworkConfig:
    """The network config for ``spec``: its family and group unless ``network`` names them."""
    if isinstance(network, NetworkConfig):
        return network
    return config.build(NetworkConfig, {"family": spec.family, "group": spec.group, **dict(network)}, "network")


def algorithm_config(name: str, cfg: dict[str, Any] | Any) -> Any:
    """``cfg`` (a mapping, or already the algorithm's config dataclass) as ``name``'s config dataclass."""
    if name not in CONFIGS:
        raise config.ConfigError(f"unknown algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    return cfg if isinstance(cfg, CONFIGS[name]) else config.build(CONFIGS[name], dict(cfg or {}), name)


def build_algorithm(name: str, spec: PolicySpec, network: dict[str, Any] | NetworkConfig, cfg: dict[str, Any] | Any,
                    device: torch.device | str = "cpu", seed: int = 0) -> Algorithm:
    """SAC, CQL, IQL or BC on the actor and critics ``policies.networks`` builds for ``spec``."""
    algo_cfg = algorithm_config(name, cfg)
    net_cfg = network_config(spec, network)
    actor = build_actor(spec, net_cfg)
    critic_cfg = net_cfg.critic_config()

    def make_critic() -> nn.Module:
        return build_critic(spec, critic_cfg)

    builders: dict[str, Callable[[], Algorithm]] = {
        "sac": lambda: SAC(spec, algo_cfg, actor, make_critic, device, seed),
        "cql": lambda: CQL(actor, make_critic, algo_cfg, spec.action.dim, device),
        "iql": lambda: IQL(actor, make_critic, algo_cfg, spec.action.dim, device,
                           make_value=lambda: build_critic(spec, critic_cfg, twin=False)),
        "bc": lambda: BC(actor, algo_cfg, device),
    }
    return builders[name]()
