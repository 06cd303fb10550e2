"""Replay buffer for SAC: flat numpy arrays, n-step accumulation, rotated copies, checkpointable state.

A stored transition is ``(obs, action, reward, next_obs, discount)`` where ``discount`` already
folds in termination and the n-step horizon: the TD target is ``reward + discount * V(next_obs)``.
Heightmaps are stored as float16 (metres; about 1e-4 m resolution at 0.3 m) to halve the memory.
Each transition carries an ``expert`` flag (the seeded scripted-expert episodes and their rotated copies),
which SAC's optional behaviour-cloning term (``SACConfig.bc_weight``) uses; a buffer file saved before the
flag existed loads with every flag false.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.specs import ObservationSpec, SpecError
from robot_stack.symmetry import Group, GroupElement, act_on_action, act_on_image, rotate_action, rotate_image

FORMAT_VERSION = 1


@dataclass
class Transition:
    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: float
    next_obs: dict[str, np.ndarray]
    discount: float
    expert: bool = False


def _transformed(tr: Transition, image: Callable[[np.ndarray], np.ndarray],
                 action: Callable[[np.ndarray], np.ndarray]) -> Transition:
    def obs(o: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**o, "heightmap": image(o["heightmap"]).astype(np.float32)}

    return Transition(obs(tr.obs), action(tr.action), tr.reward, obs(tr.next_obs), tr.discount, tr.expert)


def rotate_transition(g: GroupElement, tr: Transition) -> Transition:
    """The transition seen after transforming the world by ``g`` (the non-heightmap fields are invariant)."""
    return _transformed(tr, lambda hm: act_on_image(g, hm), lambda a: act_on_action(g, a))


def rotate_transition_by(angle: float, tr: Transition, flip: GroupElement | None = None) -> Transition:
    """The transition after rotating the world by any ``angle`` (after the mirror ``flip``, if given)."""
    if flip is not None:
        tr = rotate_transition(flip, tr)
    return _transformed(tr, lambda hm: rotate_image(hm, angle), lambda a: rotate_action(a, angle))


def random_rotated_copies(tr: Transition, group: Group, count: int, rng: np.random.Generator,
                          continuous: bool = False) -> list[Transition]:
    """``count`` copies of ``tr`` under random non-identity elements of ``group``, or, with ``continuous``, under
    rotations by uniformly random angles (and the group's mirror half the time, for a dihedral group): copies that
    also teach an exactly equivariant network something, between its group's angles."""
    if count <= 0 or group.order == 1:
        return []
    if continuous:
        mirror = next((g for g in group.elements if g.flip), None)
        return [rotate_transition_by(float(rng.uniform(0.0, 2.0 * np.pi)), tr,
                                     mirror if mirror is not None and rng.random() < 0.5 else None)
                for _ in range(count)]
    others = [g for g in group.elements if not g.is_identity]
    picks = rng.choice(len(others), size=count, replace=count > len(others))
    return [rotate_transition(others[i], tr) for i in picks]


class NStepAccumulator:
    """Turns one environment's 1-step transitions into n-step ones (n=1 passes them through)."""

    def __init__(self, n: int, gamma: float) -> None:
        if n < 1:
            raise SpecError(f"n_step must be >= 1, got {n}")
        self.n, self.gamma = n, gamma
        self._queue: deque[tuple[dict, np.ndarray, float]] = deque()

    def push(self, obs: dict, action: np.ndarray, reward: float, next_obs: dict, terminated: bool,
             truncated: bool) -> list[Transition]:
        self._queue.append((obs, action, float(reward)))
        out: list[Transition] = []
        if len(self._queue) == self.n:
            out.append(self._pop(next_obs, terminated))
        if terminated or truncated:
            while self._queue:
                out.append(self._pop(next_obs, terminated))
        return out

    def clear(self) -> None:
        self._queue.clear()

    def _pop(self, next_obs: dict, terminated: bool) -> Transition:
        ret = sum(self.gamma ** i * r for i, (_, _, r) in enumerate(self._queue))
        discount = 0.0 if terminated else self.gamma ** len(self._queue)
        obs, action, _ = self._queue.popleft()
        return Transition(obs, action, ret, next_obs, discount)


class ReplayBuffer:
    """Fixed-capacity ring buffer; ``sample`` returns float32 arrays ready for the networks."""

    def __init__(self, capacity: int, obs_spec: ObservationSpec, action_dim: int = 5, seed: int = 0) -> None:
        if capacity < 1:
            raise SpecError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity, self.obs_spec, self.action_dim = capacity, obs_spec, action_dim
        hm_shape, vec_dim = obs_spec["heightmap"].shape, obs_spec.vector_dim
        self.heightmap = np.zeros((capacity, *hm_shape), np.float16)
        self.next_heightmap = np.zeros((capacity, *hm_shape), np.float16)
        self.vector = np.zeros((capacity, vec_dim), np.float32)
        self.next_vector = np.zeros((capacity, vec_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.discount = np.zeros(capacity, np.float32)
        self.expert = np.zeros(capacity, bool)
        self.ptr = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, tr: Transition) -> None:
        i = self.ptr
        self.heightmap[i] = tr.obs["heightmap"]
        self.next_heightmap[i] = tr.next_obs["heightmap"]
        self.vector[i] = self.obs_spec.vector_of(tr.obs)
        self.next_vector[i] = self.obs_spec.vector_of(tr.next_obs)
        self.action[i] = tr.action
        self.reward[i] = tr.reward
        self.discount[i] = tr.discount
        self.expert[i] = tr.expert
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, demo_fraction: float = 0.0) -> dict[str, np.ndarray]:
        """A uniform batch, or with ``demo_fraction`` > 0 that share of it drawn from the expert transitions (when
        there are any): demonstrations keep their weight however large the buffer grows."""
        if self.size == 0:
            raise SpecError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        n_demo = int(round(demo_fraction * batch_size))
        if n_demo:
            demos = np.flatnonzero(self.expert[:self.size])
            if len(demos):
                idx[:n_demo] = demos[self.rng.integers(0, len(demos), size=n_demo)]
        return {"heightmap": self.heightmap[idx].astype(np.float32), "vector": self.vector[idx],
                "action": self.action[idx], "reward": self.reward[idx], "discount": self.discount[idx],
                "next_heightmap": self.next_heightmap[idx].astype(np.float32), "next_vector": self.next_vector[idx],
                "expert": self.expert[idx].astype(np.float32)}

    # -- checkpointing -------------------------------------------------------------------------------
    _ARRAYS = ("heightmap", "next_heightmap", "vector", "next_vector", "action", "reward", "discount", "expert")

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        state: dict[str, Any] = {name: getattr(self, name)[:n] for name in self._ARRAYS}
        state.update(ptr=self.ptr, size=self.size, capacity=self.capacity, version=FORMAT_VERSION,
                     hm_shape=np.array(self.heightmap.shape[1:]), action_dim=self.action_dim,
                     rng=np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), np.uint8))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hm_shape = tuple(int(s) for s in np.asarray(state["hm_shape"]))
        if hm_shape != self.heightmap.shape[1:] or int(state["action_dim"]) != self.action_dim:
            raise SpecError(f"replay buffer state does not fit: heightmap {list(hm_shape)} vs "
                            f"{list(self.heightmap.shape[1:])}, action_dim {int(state['action_dim'])} vs "
                            f"{self.action_dim}")
        if int(state["capacity"]) != self.capacity:
            raise SpecError(f"replay buffer capacity changed: checkpoint {int(state['capacity'])}, "
                            f"config {self.capacity}")
        n = int(state["size"])
        for name in self._ARRAYS:
            if name in state or name != "expert":  # files from before the expert flag: all flags false
                getattr(self, name)[:n] = state[name]
            else:
                self.expert[:] = False
        self.size, self.ptr = n, int(state["ptr"])
        self.rng.bit_generator.state = json.loads(bytes(np.asarray(state["rng"])).decode())

    def save(self, path: str | Path) -> None:
        """Atomic write: a killed job leaves either the old file or the new one, never half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **self.state_dict())
        os.replace(tmp, path)

    def load(self, path: str | Path) -> None:
        with np.load(path) as data:
            self.load_state_dict({k: data[k] for k in data.files})
