"""Checkpoints that carry their PolicySpec and NetworkConfig.

``save_checkpoint(path, {"actor": actor, "critic": critic}, extra={...})`` writes one file;
``load_into(actor, path, "actor")`` refuses a checkpoint of another family, group or spec with a clear error;
``build_from_checkpoint(path, "actor")`` rebuilds the network. State dicts are taken and loaded in train mode
(escnn adds expanded-filter buffers in eval mode), and the modules get their mode back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from policies.networks.config import NetworkConfig, NetworkError
from policies.networks.models import Actor, Critic, build_actor, build_critic
from robot_stack.specs import PolicySpec, mismatches

FORMAT = "robot_stack.policies.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    spec: PolicySpec
    network: NetworkConfig
    states: dict[str, dict[str, torch.Tensor]]
    kinds: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    mode = module.training
    module.train(True)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.train(mode)
    return state


def _kind(module: nn.Module) -> str:
    if isinstance(module, Actor):
        return "actor"
    if isinstance(module, Critic):
        return "critic_twin" if module.twin else "critic"
    raise NetworkError(f"checkpoints hold Actor or Critic modules, got {type(module).__name__}")


def save_checkpoint(path: str | Path, modules: dict[str, nn.Module], extra: dict[str, Any] | None = None) -> Path:
    """Save named actors/critics (all built with one spec and config) plus ``extra`` (optimizer states, step)."""
    if not modules:
        raise NetworkError("save_checkpoint needs at least one module")
    first = next(iter(modules.values()))
    for name, mod in modules.items():
        _kind(mod)
        if mod.cfg != first.cfg or mod.spec != first.spec:
            raise NetworkError(f"module {name!r} was built with another spec or config than the others")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": first.spec.to_dict(),
               "network": first.cfg.to_dict(), "kinds": {n: _kind(m) for n, m in modules.items()},
               "states": {n: _state(m) for n, m in modules.items()}, "extra": extra or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise NetworkError(f"{path}: not a robot-stack checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NetworkError(f"{path}: not a robot-stack checkpoint (format {FORMAT!r} expected)")
    if data.get("format_version") != FORMAT_VERSION:
        raise NetworkError(f"{path}: checkpoint format version {data.get('format_version')} != {FORMAT_VERSION}")
    return Checkpoint(PolicySpec.from_dict(data["spec"]), NetworkConfig.from_dict(data["network"]),
                      data["states"], data["kinds"], data.get("extra", {}))


def _entry(ckpt: Checkpoint, name: str, path: str | Path) -> dict[str, torch.Tensor]:
    if name not in ckpt.states:
        raise NetworkError(f"{path}: no module {name!r} in the checkpoint; it holds {sorted(ckpt.states)}")
    return ckpt.states[name]


def load_into(module: nn.Module, path: str | Path, name: str) -> Checkpoint:
    """Load module ``name`` of the checkpoint into ``module``; refuses another family, group, config or spec."""
    ckpt = load_checkpoint(path)
    state = _entry(ckpt, name, path)
    cfg = module.cfg
    if (ckpt.network.family, ckpt.network.group) != (cfg.family, cfg.group):
        raise NetworkError(f"{path}: checkpoint holds a {ckpt.network.family!r} {ckpt.network.group} network, this "
                           f"one is {cfg.family!r} {cfg.group}; build it with the checkpoint's config "
                           f"(build_from_checkpoint)")
    if ckpt.network != cfg:
        diffs = mismatches(ckpt.network.to_dict(), cfg.to_dict())
        raise NetworkError(f"{path}: network config differs from the checkpoint's: {'; '.join(diffs)}")
    diffs = mismatches(ckpt.spec, module.spec)
    if diffs:
        raise NetworkError(f"{path}: policy spec differs from the checkpoint's: {'; '.join(diffs)}")
    if ckpt.kinds[name] != _kind(module):
        raise NetworkError(f"{path}: module {name!r} is a {ckpt.kinds[name]}, not a {_kind(module)}")
    mode = module.training
    module.train(True)
    module.load_state_dict(state, strict=True)
    module.train(mode)
    return ckpt


def build_from_checkpoint(path: str | Path, name: str = "actor") -> nn.Module:
    """Rebuild module ``name`` with the checkpoint's spec and config, and load its weights."""
    ckpt = load_checkpoint(path)
    kind = ckpt.kinds.get(name)
    _entry(ckpt, name, path)
    if kind == "actor":
        module = build_actor(ckpt.spec, ckpt.network)
    else:
        module = build_critic(ckpt.spec, ckpt.network, twin=kind == "critic_twin")
    load_into(module, path, name)
    return module


def read_state(path: str | Path, error: type[Exception] = NetworkError, what: str = "checkpoint") -> dict[str, Any]:
    """``torch.load`` of a robot-stack checkpoint file as a dict, with clear errors for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise error(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise error(f"{path}: not a robot-stack {what}")
    return state


def load_actor(path: str | Path) -> tuple[Actor, PolicySpec, dict[str, Any]]:
    """(actor in eval mode, spec, summary) from any robot-stack checkpoint: a ``save_checkpoint`` file, a
    ``robot-stack train`` run (weights under ``agent.actor``) or a ``robot-stack offline`` run (``actor``)."""
    state = read_state(path)
    if state.get("format") == FORMAT:
        ckpt = load_checkpoint(path)
        return build_from_checkpoint(path, "actor").eval(), ckpt.spec, dict(ckpt.extra)
    agent = state.get("agent")
    weights = state.get("actor") or (agent.get("actor") if isinstance(agent, dict) else None)
    if "spec" not in state or "network" not in state or weights is None:
        raise NetworkError(f"{path}: not a robot-stack checkpoint with an actor (keys: {sorted(state)})")
    spec = PolicySpec.from_dict(state["spec"])
    network = NetworkConfig.from_dict({"family": spec.family, "group": spec.group, **dict(state["network"])})
    actor = build_actor(spec, network)
    actor.train(True)
    actor.load_state_dict(_without_eval_caches(actor, weights, path), strict=True)
    summary = {k: state[k] for k in ("algo", "step", "format") if k in state}
    return actor.eval(), spec, summary


ESCNN_EVAL_CACHES = ("filter", "expanded_bias")


def _without_eval_caches(module: nn.Module, weights: dict[str, torch.Tensor], path: str | Path
                         ) -> dict[str, torch.Tensor]:
    """Drop the expanded-filter buffers escnn adds in eval mode (derived from the weights, absent in train
    mode) from a state dict saved in eval mode; any other unexpected key is an error."""
    expected = set(module.state_dict())
    extra = [k for k in weights if k not in expected]
    unknown = [k for k in extra if k.rsplit(".", 1)[-1] not in ESCNN_EVAL_CACHES]
    if unknown:
        raise NetworkError(f"{path}: actor weights do not fit the network the checkpoint describes: unexpected "
                           f"{unknown[:5]}")
    return {k: v for k, v in weights.items() if k not in extra}
