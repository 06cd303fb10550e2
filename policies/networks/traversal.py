"""Walking a network's modules without ``nn.Module.modules()``.

``modules()`` / ``parameters()`` / ``buffers()`` dedupe submodules through a set, which hashes and compares them;
escnn's basis-expansion modules hash and compare by value (their sampled bases), so on the CPU push default one
traversal of a critic took about 6 ms, and a SAC update made a dozen of them (the soft update, the frozen-critic
toggles, the relaxed regulariser: about a third of the update, docs/results/training.md). ``submodules`` dedupes
by identity instead: the same modules in the same (pre-)order, for a tiny fraction of the cost.
"""

from __future__ import annotations

from torch import nn


def submodules(module: nn.Module) -> list[nn.Module]:
    """``module`` and every module under it, each once (by identity), in ``modules()``'s depth-first order."""
    out: list[nn.Module] = []
    seen: set[int] = set()
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.append(m)
        stack.extend(reversed([c for c in m._modules.values() if c is not None]))
    return out


def parameters(module: nn.Module) -> list[nn.Parameter]:
    """``list(module.parameters())``, through ``submodules``."""
    return _tensors(module, "_parameters")


def buffers(module: nn.Module) -> list:
    """Every buffer under ``module`` (each once), through ``submodules``."""
    return _tensors(module, "_buffers")


def _tensors(module: nn.Module, registry: str) -> list:
    out, seen = [], set()
    for m in submodules(module):
        for tensor in getattr(m, registry).values():
            if tensor is not None and id(tensor) not in seen:
                seen.add(id(tensor))
                out.append(tensor)
    return out
