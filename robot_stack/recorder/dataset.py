"""``EpisodeDataset``: committed episodes of a store as episodes, transitions and training batches.

Transitions pair step t with step t+1 of the same episode. The last step of an episode has no
next observation in the store, so it is a transition only when it is terminal (``done = 1``, its
``next_obs`` is a copy of its own observation and is masked out by ``done``); the last step of an
episode cut by a time limit is left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.recorder import store
from robot_stack.specs import ActionSpec, ObservationSpec, SpecError, mismatches
from robot_stack.symmetry import Group, act_on_batch

# Load obs/action/reward into memory at open when they are smaller than this.
CACHE_LIMIT_BYTES = 1 << 30
# Steps hashed at a time by ``fingerprint`` (a store too large to cache is not read whole into memory).
FINGERPRINT_BLOCK_STEPS = 4096


class DatasetError(SpecError):
    """A dataset that cannot be used for training: empty, NaNs, a spec that does not match."""


@dataclass
class Episode:
    index: int
    meta: dict[str, Any]
    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    timestamp: np.ndarray
    extras: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.action)


class EpisodeDataset:
    """Read the committed episodes of a store (local path or fsspec URL, e.g. ``s3://bucket/run.zarr``).

    ``episodes`` restricts the view to some episode indices (what ``split`` returns). ``cache``:
    load the training arrays into memory (default: when they are under 1 GiB).
    """

    def __init__(self, path_or_url: str | Path, episodes: Sequence[int] | None = None, cache: bool | None = None,
                 storage_options: dict | None = None) -> None:
        self.path = str(path_or_url)
        self.group, self.header = store.open_group(self.path, "r", storage_options)
        store.check_spec(self.header, self.path)
        self._obs_spec = ObservationSpec.from_dict(self.header["obs_spec"])
        self._action_spec = ActionSpec.from_dict(self.header["action_spec"])
        self.state = store.read_state(self.group)
        self._arrays = dict(self.group["data"].arrays()) if self.state.n_episodes else {}
        n = self.state.n_episodes
        chosen = range(n) if episodes is None else list(episodes)
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise DatasetError(f"{self.path}: episode indices {bad} out of range (the store has {n} episodes)")
        self.episode_ids = np.asarray(list(chosen), dtype=np.int64)
        self._storage_options = storage_options
        self._cache: dict[str, np.ndarray] = {}
        self._index: _StepIndex | None = None
        if cache or (cache is None and self._training_bytes() <= CACHE_LIMIT_BYTES):
            self.load()

    # -- description -----------------------------------------------------------------------------
    @property
    def obs_spec(self) -> ObservationSpec:
        return self._obs_spec

    @property
    def action_spec(self) -> ActionSpec:
        return self._action_spec

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.header.get("meta", {}))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._arrays))

    def __len__(self) -> int:
        return len(self.episode_ids)

    @property
    def n_steps(self) -> int:
        return int(sum(self._bounds(i)[1] - self._bounds(i)[0] for i in self.episode_ids))

    def episode_meta(self, index: int) -> dict[str, Any]:
        return dict(self.state.infos[index])

    def episode_stats(self) -> dict[str, Any]:
        """What the view's episodes hold: episodes, steps, transitions (as ``transitions()`` counts them), the
        episodes recorded as successful and their share of those with a success label (None when no episode has
        one), and the mean return and length per episode (NaN without episodes)."""
        bounds = [self._bounds(int(i)) for i in self.episode_ids]
        labels = [self.episode_meta(int(i)).get("success") for i in self.episode_ids]
        known = [bool(x) for x in labels if x is not None]
        returns = [float(np.sum(self._read("reward", slice(a, b)))) for a, b in bounds]
        return {"episodes": len(bounds), "steps": int(sum(b - a for a, b in bounds)),
                "transitions": self.n_transitions() if bounds else 0, "successes": sum(known),
                "success_share": float(np.mean(known)) if known else None,
                "mean_return": float(np.mean(returns)) if bounds else float("nan"),
                "mean_length": float(np.mean([b - a for a, b in bounds])) if bounds else float("nan")}

    def fingerprint(self) -> str:
        """A hash of what the store holds (all its committed episodes, whatever the view): header, episode ends and
        metadata, and every step of the arrays training reads. A store recorded again gets another one (episodes
        carry their start time), so a result computed from a store can tell whether it is still the same data."""
        digest = hashlib.sha1(json.dumps(self.header, sort_keys=True, default=str).encode())
        digest.update(np.ascontiguousarray(self.state.ends, dtype=np.int64).tobytes())
        digest.update(json.dumps(self.state.infos, sort_keys=True, default=str).encode())
        end = self.state.n_steps
        for key in [k for k in self._training_keys() if k in self._arrays]:
            for start in range(0, end, FINGERPRINT_BLOCK_STEPS):
                block = self._read(key, slice(start, min(end, start + FINGERPRINT_BLOCK_STEPS)))
                digest.update(np.ascontiguousarray(block).tobytes())
        return digest.hexdigest()[:16]

    def _bounds(self, index: int) -> tuple[int, int]:
        start = int(self.state.ends[index - 1]) if index > 0 else 0
        return start, int(self.state.ends[index])

    def _training_keys(self) -> list[str]:
        return [*self._obs_spec.names, "action", "reward", "terminal"]

    def _training_bytes(self) -> int:
        total = 0
        for k in self._training_keys():
            arr = self._arrays.get(k)
            if arr is not None:
                total += self.state.n_steps * int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
        return total

    # -- reading ---------------------------------------------------------------------------------
    def load(self) -> EpisodeDataset:
        """Read the training arrays (observation fields, action, reward, terminal) into memory."""
        end = self.state.n_steps
        for k in self._training_keys():
            if k in self._arrays and k not in self._cache:
                self._cache[k] = np.asarray(self._arrays[k][:end])
        return self

    def _read(self, key: str, sel: slice | np.ndarray) -> np.ndarray:
        if key in self._cache:
            return self._cache[key][sel]
        if key not in self._arrays:
            raise DatasetError(f"{self.path}: no array data/{key}; arrays: {list(self.keys)}")
        arr = self._arrays[key]
        if isinstance(sel, slice):
            return np.asarray(arr[sel])
        order = np.argsort(sel, kind="stable")
        uniq, inverse = np.unique(sel[order], return_inverse=True)
        rows = np.asarray(arr.oindex[uniq]) if len(uniq) else np.zeros((0, *arr.shape[1:]), arr.dtype)
        out = np.empty((len(sel), *arr.shape[1:]), dtype=arr.dtype)
        out[order] = rows[inverse]
        return out

    def episode(self, index: int, extras: bool = True) -> Episode:
        """Episode ``index`` (an index into the store, see ``episode_ids``) with all its arrays."""
        if not 0 <= index < self.state.n_episodes:
            raise DatasetError(f"{self.path}: no episode {index} (the store has {self.state.n_episodes})")
        sl = slice(*self._bounds(index))
        obs = {k: self._read(k, sl) for k in self._obs_spec.names}
        other = [k for k in self._arrays if k not in obs and k not in store.CORE_KEYS]
        more = {k: self._read(k, sl) for k in other} if extras else {}
        return Episode(index, self.episode_meta(index), obs, self._read("action", sl), self._read("reward", sl),
                       self._read("terminal", sl), self._read("timestamp", sl), more)

    def episodes(self, extras: bool = True) -> Iterator[Episode]:
        for i in self.episode_ids:
            yield self.episode(int(i), extras)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[EpisodeDataset, EpisodeDataset]:
        """(train, validation) by whole episodes; at least one episode on each side when there are two."""
        if not 0.0 < val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.check_nonempty()
        ids = np.random.default_rng(seed).permutation(self.episode_ids)
        n_val = int(round(val_fraction * len(ids)))
        n_val = min(max(n_val, 1), len(ids) - 1) if len(ids) >= 2 else 0
        return self._subset(np.sort(ids[n_val:])), self._subset(np.sort(ids[:n_val]))

    def _subset(self, ids: np.ndarray) -> EpisodeDataset:
        sub = object.__new__(EpisodeDataset)
        sub.__dict__.update(self.__dict__)
        sub.episode_ids, sub._index = np.asarray(ids, dtype=np.int64), None
        return sub

    # -- checks the trainers call ----------------------------------------------------------------
    def check_nonempty(self) -> None:
        if len(self) == 0 or self.n_steps == 0:
            raise DatasetError(f"{self.path}: the dataset has no committed episodes")

    def check_spec(self, obs_spec: ObservationSpec | None = None, action_spec: ActionSpec | None = None) -> None:
        diffs = []
        if obs_spec is not None:
            diffs += [f"observation {d}" for d in mismatches(obs_spec, self._obs_spec)]
        if action_spec is not None:
            diffs += [f"action {d}" for d in mismatches(action_spec, self._action_spec)]
        if diffs:
            raise DatasetError(f"{self.path}: dataset spec does not match the training spec: " + "; ".join(diffs))

    def check_finite(self) -> None:
        for i in self.episode_ids:
            sl = slice(*self._bounds(int(i)))
            for k in [*self._obs_spec.names, "action", "reward"]:
                bad = ~np.isfinite(self._read(k, sl))
                if bad.any():
                    step = int(np.argwhere(bad.reshape(len(bad), -1).any(axis=1))[0, 0])
                    raise DatasetError(f"{self.path}: data/{k} has NaN or inf in episode {int(i)} at step {step}")

    def check(self, obs_spec: ObservationSpec | None = None, action_spec: ActionSpec | None = None) -> None:
        """Everything a trainer needs: non-empty, matching specs, finite values."""
        self.check_nonempty()
        self.check_spec(obs_spec, action_spec)
        self.check_finite()

    # -- transitions and sampling ----------------------------------------------------------------
    def _steps(self) -> _StepIndex:
        if self._index is None:
            self._index = _StepIndex.build(self, [self._bounds(int(i)) for i in sorted(self.episode_ids)])
        return self._index

    def n_transitions(self) -> int:
        """How many transitions ``transitions()`` returns, without gathering them."""
        self.check_nonempty()
        return len(self._steps().valid)

    def transitions(self, n_step: int = 1, gamma: float = 0.99) -> dict[str, Any]:
        """Every valid transition of the view, as arrays (obs, action, reward, next_obs, done, discount)."""
        self.check_nonempty()
        return self._gather(self._steps().valid, n_step, gamma)

    def sample(self, batch: int, rng: np.random.Generator, augment_group: str | Group | None = None,
               n_step: int = 1, gamma: float = 0.99) -> dict[str, Any]:
        """A random batch of (n-step) transitions; ``augment_group`` transforms each by a random element."""
        self.check_nonempty()
        valid = self._steps().valid
        if not len(valid):
            raise DatasetError(f"{self.path}: no transitions (every episode has a single non-terminal step)")
        out = self._gather(valid[rng.integers(0, len(valid), size=batch)], n_step, gamma)
        if augment_group is not None:
            group = augment_group if isinstance(augment_group, Group) else Group.parse(augment_group)
            out = augment(out, group, rng)
        return out

    def _gather(self, t: np.ndarray, n_step: int, gamma: float) -> dict[str, Any]:
        if n_step < 1:
            raise DatasetError(f"n_step must be >= 1, got {n_step}")
        idx = self._steps()
        k, done = idx.horizon(t, n_step)
        rewards = np.zeros(len(t), dtype=np.float32)
        for i in range(n_step):
            live = i < k
            r = self._read("reward", np.where(live, t + i, t))
            rewards += np.where(live, (gamma ** i) * r, 0.0).astype(np.float32)
        nxt = np.where(done, t + k - 1, t + k)
        return {"obs": {f: self._read(f, t) for f in self._obs_spec.names},
                "action": self._read("action", t), "reward": rewards,
                "next_obs": {f: self._read(f, nxt) for f in self._obs_spec.names},
                "done": done.astype(np.float32), "discount": (gamma ** k).astype(np.float32),
                "index": t}


@dataclass
class _StepIndex:
    """Per-step episode end and the first terminal at or after each step (global step indices)."""

    end: np.ndarray
    next_terminal: np.ndarray
    valid: np.ndarray
    starts: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, ds: EpisodeDataset, bounds: list[tuple[int, int]]) -> _StepIndex:
        ends, nxt, valid = [], [], []
        for s, e in bounds:
            term = np.asarray(ds._read("terminal", slice(s, e)), dtype=bool)
            pos = np.where(term, np.arange(s, e), e)
            nt = np.minimum.accumulate(pos[::-1])[::-1]
            steps = np.arange(s, e)
            ok = (steps < e - 1) | (nt < e)
            ends.append(np.full(e - s, e))
            nxt.append(nt)
            valid.append(steps[ok])
        starts = np.array([s for s, _ in bounds], dtype=np.int64)
        offsets = np.cumsum([0] + [e - s for s, e in bounds]).astype(np.int64)
        return cls(_cat(ends), _cat(nxt), _cat(valid), starts, offsets)

    def horizon(self, t: np.ndarray, n_step: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps summed ``k`` and ``done`` for n-step transitions starting at global steps ``t``."""
        pos = self._position(t)
        end, nt = self.end[pos], self.next_terminal[pos]
        hits = nt < np.minimum(t + n_step, end)
        k = np.where(hits, nt - t + 1, np.minimum(n_step, end - 1 - t))
        return k.astype(np.int64), hits

    def _position(self, t: np.ndarray) -> np.ndarray:
        ep = np.searchsorted(self.starts, t, side="right") - 1
        return self.offsets[ep] + (t - self.starts[ep])


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def augment(batch: dict[str, Any], group: Group, rng: np.random.Generator) -> dict[str, Any]:
    """Transform each transition by a random element of ``group`` (heightmaps and (dx, dy, dtheta))."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in batch.items()}
    action, picks, (hm, nhm) = act_on_batch(group, rng, batch["action"], batch["obs"]["heightmap"],
                                            batch["next_obs"]["heightmap"])
    out["obs"]["heightmap"], out["next_obs"]["heightmap"], out["action"] = hm, nhm, action
    out["group_element"] = picks
    return out
