"""Checkpoints: one file format, read without unpickling.

A checkpoint is one ``torch.save`` file holding plain data only, so ``torch.load(weights_only=True)`` reads it
without running any code a shared file may carry::

    {"format": "robot_stack.checkpoint", "version": 2,
     "spec": PolicySpec JSON text, "network": NetworkConfig JSON text,
     "modules": {name: state dict}, "extra": {tensors, numbers, strings, lists, dicts}}

``write_checkpoint`` writes it (atomically), ``read_checkpoint`` reads it (and the three older layouts: the
version-1 ``save_checkpoint`` file, ``robot-stack train``'s ``agent.*`` file, ``robot_stack.offline/1``),
``load_actor`` rebuilds the actor for export. ``read_state`` is the one ``torch.load`` in the repository: a file
holding pickled Python objects is refused, never executed. State dicts are taken and loaded in train mode (escnn
adds expanded-filter buffers in eval mode), and modules get their mode back afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from policies.networks.config import NetworkConfig, NetworkError
from policies.networks.models import Actor, Critic, build_actor, build_critic
from robot_stack.specs import PolicySpec, mismatches

FORMAT = "robot_stack.checkpoint"
FORMAT_VERSION = 2
LEGACY_V1 = "robot_stack.policies.checkpoint"  # save_checkpoint's format before version 2
LEGACY_OFFLINE = "robot_stack.offline/1"
ESCNN_EVAL_CACHES = ("filter", "expanded_bias")
PLAIN = (bool, int, float, str, type(None))

StateDict = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    """A checkpoint file's content. ``format`` is ``robot_stack.checkpoint/2`` for the current format, or the
    older layout it was read from (e.g. ``robot_stack.offline/1``, ``robot_stack.train/2``)."""

    spec: PolicySpec
    network: NetworkConfig
    modules: dict[str, StateDict]
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = f"{FORMAT}/{FORMAT_VERSION}"

    def module(self, name: str, path: str | Path) -> StateDict:
        if name not in self.modules:
            raise NetworkError(f"{path}: no module {name!r} in the checkpoint; it holds {sorted(self.modules)}")
        return self.modules[name]


# ------------------------------------------------------------------------------------------- reading the file
def read_state(path: str | Path, error: type[Exception] = NetworkError, what: str = "checkpoint") -> dict[str, Any]:
    """The file's top-level dict via ``torch.load(weights_only=True)``; ``error`` for a file that is no plain-data
    dict, and in particular for one holding pickled Python objects (which would run code when unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise error(_unpickling_message(path, what, exc)) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise error(_unreadable(path, what, f"{type(exc).__name__}: {exc}")) from exc
    if not isinstance(state, dict):
        raise error(f"{path}: not a robot-stack {what} (a {type(state).__name__}, not a dict)")
    return state


def _unpickling_message(path: Path, what: str, exc: Exception) -> str:
    # torch's own message suggests weights_only=False, the very thing to avoid, so only its last reason is kept
    reason = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if str(exc) else ""
    if "global" not in reason.lower():
        return _unreadable(path, what, reason or "unpickling failed")
    return (f"{path}: refused: this {what} holds pickled Python objects ({reason.split('. ')[0]}), which "
            f"robot-stack will not execute; it loads checkpoints as tensors, numbers, strings, lists and dicts "
            f"only. Only if you trust its origin, re-save its weights with policies.checkpoint.write_checkpoint.")


def _unreadable(path: Path, what: str, reason: str) -> str:
    return f"{path}: not a readable {what} (not a robot-stack checkpoint file: {reason})"


def read_checkpoint(path: str | Path, error: type[Exception] = NetworkError, what: str = "checkpoint"
                    ) -> Checkpoint:
    """The checkpoint at ``path`` in the current format or one of the older layouts robot-stack wrote; a file
    that is none of them raises ``error`` (a job passes its own, e.g. the train job's ``CheckpointError``)."""
    data = read_state(path, error, what)
    try:
        return _decode(data, Path(path))
    except NetworkError as exc:
        raise error(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:  # a spec or network config that does not parse
        raise error(f"{path}: a {what} without a valid spec / network config ({type(exc).__name__}: {exc})"
                    ) from exc


def _decode(data: dict[str, Any], path: Path) -> Checkpoint:
    fmt = data.get("format")
    if fmt == FORMAT:
        return _current(data, path)
    if fmt == LEGACY_V1:
        return _legacy(data, data.get("states", {}), data.get("extra", {}), f"{LEGACY_V1}/1")
    if fmt == LEGACY_OFFLINE:
        extra = {k: data[k] for k in ("algo", "eval") if k in data}
        return _legacy(data, {"actor": data.get("actor"), **data.get("modules", {})}, extra, fmt)
    if isinstance(data.get("agent"), dict):
        return _legacy_train(data)
    raise NetworkError(f"{path}: not a robot-stack checkpoint (format {fmt!r}; robot-stack reads {FORMAT!r} "
                       f"version {FORMAT_VERSION} and the older train, offline and save_checkpoint files; "
                       f"keys: {sorted(data)[:8]})")


def _current(data: dict[str, Any], path: Path) -> Checkpoint:
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise NetworkError(f"{path}: checkpoint format version {version}, this robot-stack reads version "
                           f"{FORMAT_VERSION}; use the robot-stack release that wrote it")
    spec = PolicySpec.from_json(data["spec"])
    network = NetworkConfig.from_dict(json.loads(data["network"]))
    return Checkpoint(spec, network, dict(data.get("modules", {})), dict(data.get("extra", {})),
                      f"{FORMAT}/{version}")


def _legacy(data: dict[str, Any], modules: dict[str, Any], extra: dict[str, Any], fmt: str) -> Checkpoint:
    # train and offline files stored the job's network mapping, which may leave family / group to the spec
    spec = PolicySpec.from_dict(data["spec"])
    network = NetworkConfig.from_dict({"family": spec.family, "group": spec.group, **data["network"]})
    weights = {name: state for name, state in modules.items() if isinstance(state, dict)}
    return Checkpoint(spec, network, weights, dict(extra), fmt)


def _legacy_train(data: dict[str, Any]) -> Checkpoint:
    agent = data["agent"]
    modules = {k: v for k, v in agent.items() if k in ("actor", "critic", "critic_target")}
    extra = {k: v for k, v in data.items() if k not in ("spec", "network", "agent", "format")}
    extra["agent"] = {k: v for k, v in agent.items() if k not in modules}
    return _legacy(data, modules, extra, f"robot_stack.train/{data.get('format')}")


# ------------------------------------------------------------------------------------------- writing the file
def write_checkpoint(path: str | Path, spec: PolicySpec, network: NetworkConfig | dict[str, Any],
                     modules: dict[str, StateDict], extra: dict[str, Any] | None = None) -> Path:
    """Write the one checkpoint format: tmp file, then ``os.replace``, so a reader never sees half a file.
    ``network`` as a mapping may leave family / group to the spec; ``extra`` must be plain data."""
    if not isinstance(network, NetworkConfig):
        network = NetworkConfig.from_dict({"family": spec.family, "group": spec.group, **dict(network)})
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "spec": spec.to_json(),
               "network": json.dumps(network.to_dict()), "modules": modules, "extra": extra or {}}
    _check_plain(payload, "checkpoint")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_plain(value: Any, where: str) -> None:
    """Refuse at save time what ``weights_only`` loading would refuse later (numpy scalars, objects)."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN:
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; checkpoint keys are str or int")
            _check_plain(item, f"{where}[{key!r}]")
    else:
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; checkpoints hold tensors, "
                        f"numbers, strings, lists and dicts only (convert it, e.g. float() or .tolist())")


def load_module_state(module: nn.Module, state: StateDict) -> None:
    """Load a ``module_state`` state dict: in train mode, where escnn keeps no expanded-filter buffers."""
    module.train(True)
    module.load_state_dict(state)


def module_state(module: nn.Module) -> StateDict:
    """``module``'s state dict taken in train mode (escnn's eval-mode caches are not weights)."""
    mode = module.training
    module.train(True)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.train(mode)
    return state


def save_checkpoint(path: str | Path, modules: dict[str, nn.Module], extra: dict[str, Any] | None = None) -> Path:
    """``write_checkpoint`` for named actors / critics all built with one spec and network config."""
    if not modules:
        raise NetworkError("save_checkpoint needs at least one module")
    first = next(iter(modules.values()))
    for name, mod in modules.items():
        if not isinstance(mod, Actor | Critic):
            raise NetworkError(f"checkpoints hold Actor or Critic modules, {name!r} is a {type(mod).__name__}")
        if mod.cfg != first.cfg or mod.spec != first.spec:
            raise NetworkError(f"module {name!r} was built with another spec or config than the others")
    states = {name: module_state(mod) for name, mod in modules.items()}
    return write_checkpoint(path, first.spec, first.cfg, states, extra)


# ------------------------------------------------------------------------------------------- into networks
def load_into(module: nn.Module, path: str | Path, name: str) -> Checkpoint:
    """Load module ``name`` of the checkpoint into ``module``; refuses another family, group, config or spec."""
    ckpt = read_checkpoint(path)
    state = ckpt.module(name, path)
    cfg = module.cfg
    saved = ckpt.network.critic_config() if isinstance(module, Critic) else ckpt.network
    if (saved.family, saved.group) != (cfg.family, cfg.group):
        raise NetworkError(f"{path}: checkpoint holds a {saved.family!r} {saved.group} network, this "
                           f"one is {cfg.family!r} {cfg.group}; build it with the checkpoint's config "
                           f"(build_from_checkpoint)")
    if saved != cfg:
        diffs = mismatches(saved.to_dict(), cfg.to_dict())
        raise NetworkError(f"{path}: network config differs from the checkpoint's: {'; '.join(diffs)}")
    diffs = mismatches(ckpt.spec, module.spec)
    if diffs:
        raise NetworkError(f"{path}: policy spec differs from the checkpoint's: {'; '.join(diffs)}")
    _load_weights(module, state, path, name)
    return ckpt


def build_from_checkpoint(path: str | Path, name: str = "actor") -> nn.Module:
    """Rebuild module ``name`` with the checkpoint's spec and config, and load its weights."""
    ckpt = read_checkpoint(path)
    state = ckpt.module(name, path)
    # a Critic keeps its Q heads in ``heads.<i>``, an Actor its one head in ``head``
    if any(key.startswith("heads.") for key in state):
        module = build_critic(ckpt.spec, ckpt.network.critic_config(),
                              twin=any(key.startswith("heads.1.") for key in state))
    else:
        module = build_actor(ckpt.spec, ckpt.network)
    return _load_weights(module, state, path, name)


def load_actor(path: str | Path) -> tuple[Actor, PolicySpec, dict[str, Any]]:
    """(actor in eval mode, spec, summary: ``format`` and the plain values of ``extra``) from any checkpoint
    ``read_checkpoint`` reads."""
    ckpt = read_checkpoint(path)
    actor = _load_weights(build_actor(ckpt.spec, ckpt.network), ckpt.module("actor", path), path, "actor")
    summary = {k: v for k, v in ckpt.extra.items() if type(v) in PLAIN}
    return actor.eval(), ckpt.spec, {**summary, "format": ckpt.format}


def _load_weights(module: nn.Module, weights: StateDict, path: str | Path, name: str) -> nn.Module:
    mode = module.training
    module.train(True)
    try:
        module.load_state_dict(_without_eval_caches(module, weights, path, name), strict=True)
    except RuntimeError as exc:
        raise NetworkError(f"{path}: {name} weights do not fit the network the checkpoint describes: {exc}") from exc
    finally:
        module.train(mode)
    return module


def _without_eval_caches(module: nn.Module, weights: StateDict, path: str | Path, name: str) -> StateDict:
    """Drop the expanded-filter buffers escnn adds in eval mode (derived from the weights, absent in train
    mode) from a state dict saved in eval mode; any other unexpected key is an error."""
    expected = set(module.state_dict())
    extra = [k for k in weights if k not in expected]
    unknown = [k for k in extra if k.rsplit(".", 1)[-1] not in ESCNN_EVAL_CACHES]
    if unknown:
        raise NetworkError(f"{path}: {name} weights do not fit the network the checkpoint describes: unexpected "
                           f"{unknown[:5]}")
    return {k: v for k, v in weights.items() if k not in extra}
