"""Transitions for the algorithms: recorded datasets as flat arrays, checked before training, sampled into batches,
and the one batch rotation (every sample acted on by a random element of the policy's group).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policies.core import Batch
from robot_stack.specs import ObservationSpec, PolicySpec, SpecError
from robot_stack.symmetry import Group, act_on_batch


def rotate_batch(data: dict[str, np.ndarray], group: Group, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Act on every transition with a random element of ``group`` (``robot_stack.symmetry.act_on_batch``):
    heightmaps of s and s' and the action; the vector fields are invariant and stay as they are."""
    action, _, (hm, nhm) = act_on_batch(group, rng, data["action"], data["heightmap"], data["next_heightmap"])
    return {**data, "heightmap": hm, "next_heightmap": nhm, "action": action}


TRANSITION_KEYS = ("heightmap", "vector", "action", "reward", "next_heightmap", "next_vector", "done")


@dataclass
class TransitionArrays:
    """All transitions of one or more datasets as flat numpy arrays, for fast sampling."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["action"])

    def sample(self, batch: int, rng: np.random.Generator, group: Group | None = None) -> dict[str, np.ndarray]:
        idx = rng.integers(len(self), size=batch)
        data = {k: v[idx] for k, v in self.arrays.items()}
        return rotate_batch(data, group, rng) if group is not None and group.order > 1 else data

    @classmethod
    def concat(cls, parts: list[TransitionArrays]) -> TransitionArrays:
        return cls({k: np.concatenate([p.arrays[k] for p in parts]) for k in TRANSITION_KEYS})


def check_transitions(data: TransitionArrays, source: str, action_dim: int) -> None:
    """Refuse, before training, data that cannot train anything: no transitions, NaN/inf, bad shapes."""
    n = len(data)
    if n == 0:
        raise SpecError(f"dataset {source}: no transitions (an empty dataset cannot be trained on)")
    for key in TRANSITION_KEYS:
        arr = data.arrays[key]
        if len(arr) != n:
            raise SpecError(f"dataset {source}: {key} has {len(arr)} rows, action has {n}")
        bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise SpecError(f"dataset {source}: {key} contains NaN or inf in {int(bad.sum())} transition(s), "
                            f"first rows {rows}")
    if data.arrays["action"].shape[1:] != (action_dim,):
        raise SpecError(f"dataset {source}: actions must be [N, {action_dim}], got {list(data.arrays['action'].shape)}")


def batches(data: TransitionArrays, batch_size: int, rng: np.random.Generator, group: Group | None,
            device: torch.device) -> Iterator[Batch]:
    while True:
        yield Batch.from_numpy(data.sample(batch_size, rng, group), device)


def dataset_arrays(transitions: dict[str, Any], obs_spec: ObservationSpec) -> TransitionArrays:
    """``EpisodeDataset.transitions()`` -> flat arrays with the vector fields concatenated in spec order."""
    def vector(obs: dict[str, np.ndarray]) -> np.ndarray:
        return obs_spec.vector_of(obs, batched=True)

    obs, nxt = transitions["obs"], transitions["next_obs"]
    return TransitionArrays({
        "heightmap": np.asarray(obs["heightmap"], np.float32), "vector": vector(obs),
        "action": np.asarray(transitions["action"], np.float32),
        "reward": np.asarray(transitions["reward"], np.float32).reshape(-1),
        "next_heightmap": np.asarray(nxt["heightmap"], np.float32), "next_vector": vector(nxt),
        "done": np.asarray(transitions["done"], np.float32).reshape(-1)})


def load_datasets(paths: list[str], spec: PolicySpec, successes_only: bool = False) -> TransitionArrays:
    """Open, check (non-empty, matching specs, finite) and load every dataset; mixed into one set. With
    ``successes_only``, only the episodes recorded as successful (filtered behaviour cloning)."""
    from robot_stack.recorder import EpisodeDataset

    parts = []
    for path in paths:
        ds = EpisodeDataset(path)
        ds.check(spec.observation, spec.action)
        if successes_only:
            ds = _successful_episodes(ds, path)
        arrays = dataset_arrays(ds.transitions(), spec.observation)
        check_transitions(arrays, path, spec.action.dim)
        parts.append(arrays)
    return TransitionArrays.concat(parts)


def _successful_episodes(ds: Any, path: str) -> Any:
    from robot_stack.recorder import EpisodeDataset

    kept = [i for i in range(len(ds)) if ds.episode_meta(i).get("success")]
    if not kept:
        raise SpecError(f"dataset {path}: no episode is marked successful (successes_only needs at least one)")
    return EpisodeDataset(path, episodes=kept)
