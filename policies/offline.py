"""Pieces shared by the offline algorithms (CQL, IQL, BC): batches, twin critics, tanh-Gaussian sampling,
batch rotation, dataset checks and the training loop.

The algorithms themselves live in ``policies/cql.py``, ``policies/iql.py`` and ``policies/bc.py``; each
exposes ``update(batch) -> dict[str, float]`` and ``modules() -> dict[str, nn.Module]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from robot_stack.specs import ObservationSpec, PolicySpec, SpecError, mismatches
from robot_stack.symmetry import Group, act_on_action, act_on_image

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Batch:
    """A batch of transitions as tensors: heightmaps [B,C,S,S], vectors [B,k], actions [B,5], rest [B]."""

    heightmap: torch.Tensor
    vector: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_heightmap: torch.Tensor
    next_vector: torch.Tensor
    done: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.action.shape[0])

    @classmethod
    def from_numpy(cls, data: dict[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
        def t(key: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(data[key], dtype=np.float32), device=device)

        return cls(t("heightmap"), t("vector"), t("action"), t("reward").reshape(-1), t("next_heightmap"),
                   t("next_vector"), t("done").reshape(-1))


class Algorithm(Protocol):
    actor: nn.Module

    def update(self, batch: Batch) -> dict[str, float]: ...

    def modules(self) -> dict[str, nn.Module]: ...


class TwinQ(nn.Module):
    """Two Q estimates from one critic that returns ``(q1, q2)`` or from two single-head critics."""

    def __init__(self, make_critic: Callable[[], nn.Module], fused: bool | None = None) -> None:
        super().__init__()
        first = make_critic()
        self.fused = bool(getattr(first, "twin", False)) if fused is None else fused
        self.heads = nn.ModuleList([first] if self.fused else [first, make_critic()])

    def forward(self, hm: torch.Tensor, vec: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            q1, q2 = self.heads[0](hm, vec, action)
        else:
            q1, q2 = self.heads[0](hm, vec, action), self.heads[1](hm, vec, action)
        return q1.reshape(-1), q2.reshape(-1)

    def encode(self, hm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per critic, what ``from_features`` needs: ``Critic.encode(hm)`` when the critic has it (one encoder pass
        per state), else the heightmap itself (critics without the split are run whole)."""
        return tuple(h.encode(hm) if hasattr(h, "q_from_features") else hm for h in self.heads)

    def from_features(self, feats: tuple[torch.Tensor, ...], vec: torch.Tensor, action: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` after ``encode``; rows of ``feats`` may be repeated (``repeat_rows``) to pair a state with
        several actions."""
        outs = [h.q_from_features(f, vec, action) if hasattr(h, "q_from_features") else h(f, vec, action)
                for h, f in zip(self.heads, feats, strict=True)]
        q1, q2 = outs[0] if self.fused else outs
        return q1.reshape(-1), q2.reshape(-1)


def repeat_rows(feats: tuple[torch.Tensor, ...], n: int) -> tuple[torch.Tensor, ...]:
    """Each row n times in a row ([s0, s0, ..., s1, s1, ...]), for every tensor of ``TwinQ.encode``'s output."""
    return tuple(f.repeat_interleave(n, dim=0) for f in feats)


class StateValue(nn.Module):
    """V(s) built from an invariant critic evaluated at the zero action (itself group-invariant)."""

    def __init__(self, critic: nn.Module, action_dim: int = 5) -> None:
        super().__init__()
        self.critic = critic
        self.action_dim = action_dim

    def forward(self, hm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(hm.shape[0], self.action_dim, device=hm.device, dtype=hm.dtype)
        out = self.critic(hm, vec, zero)
        if isinstance(out, tuple):
            out = out[0]
        return out.reshape(-1)


def actor_dist(actor: nn.Module, hm: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-tanh mean, std) with log-std clamped to [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, log_std = actor(hm, vec)
    return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()


def sample_tanh_gaussian(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(u), u ~ N(mean, std), and log pi(a) summed over action dims."""
    u = mean + std * torch.randn_like(mean)
    action = torch.tanh(u)
    log_prob = torch.distributions.Normal(mean, std).log_prob(u)
    # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
    log_prob = log_prob - 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return action, log_prob.sum(-1)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)


def deterministic_action(actor: nn.Module, hm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    mean, _ = actor(hm, vec)
    return torch.tanh(mean)


# ---------------------------------------------------------------- batch rotation (data augmentation)

def rotate_batch(data: dict[str, np.ndarray], group: Group, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Act on every transition with a random element of ``group``: heightmaps (obs and next obs) and
    the action; vector fields are invariant scalars (ARCHITECTURE: Observation) and stay as they are."""
    out = dict(data)
    picks = rng.integers(group.order, size=len(data["action"]))
    hm, nhm, act = data["heightmap"].copy(), data["next_heightmap"].copy(), data["action"].copy()
    for index in np.unique(picks):
        g = group.element(int(index))
        if g.is_identity:
            continue
        rows = picks == index
        hm[rows] = act_on_image(g, hm[rows])
        nhm[rows] = act_on_image(g, nhm[rows])
        act[rows] = act_on_action(g, act[rows])
    out.update(heightmap=hm, next_heightmap=nhm, action=act)
    return out


# ---------------------------------------------------------------- transitions in memory

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


def check_transitions(data: TransitionArrays, source: str) -> None:
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
    if data.arrays["action"].shape[1:] != (5,):
        raise SpecError(f"dataset {source}: actions must be [N, 5], got {list(data.arrays['action'].shape)}")


# ---------------------------------------------------------------- the loop

def batches(data: TransitionArrays, batch_size: int, rng: np.random.Generator, group: Group | None,
            device: torch.device) -> Iterator[Batch]:
    while True:
        yield Batch.from_numpy(data.sample(batch_size, rng, group), device)


def train_loop(algo: Algorithm, stream: Iterator[Batch], steps: int, log_every: int = 100,
               progress: bool = True, callback: Callable[[int, dict[str, float]], Any] | None = None
               ) -> list[dict[str, float]]:
    """Run ``steps`` gradient updates; returns the logged metrics (mean over each ``log_every`` window)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(type(algo).__name__, total=steps, info="")
        for step in range(1, steps + 1):
            metrics = algo.update(next(stream))
            window.append(metrics)
            if step % log_every == 0 or step == steps:
                mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                mean["step"] = step
                history.append(mean)
                window = []
                bar.update(task, info=" ".join(f"{k}={v:.3g}" for k, v in mean.items() if k != "step"))
                if callback is not None:
                    callback(step, mean)
            bar.advance(task)
    return history


def check_finite(metrics: dict[str, float], step_name: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"{step_name}: non-finite {bad} - lower the learning rate or check the data")


# ---------------------------------------------------------------- the job's pieces (used by robot-stack offline)

def make_eval_env(task: str, env_cfg: dict[str, Any], network: dict[str, Any]) -> tuple[Any, PolicySpec]:
    """The evaluation env and the policy spec its observations and the network config define."""
    if task == "toy_reach":
        from sim.toy import make_toy_env

        env = make_toy_env(**env_cfg)
    else:
        from sim import make_env

        env = make_env(task, **env_cfg)
    obs_spec, action_spec, hm_spec = env.policy_spec_parts
    family = str(network.get("family", "relaxed"))
    group = str(network.get("group", "C8"))
    return env, PolicySpec(obs_spec, action_spec, hm_spec, group=group, family=family)


def dataset_arrays(transitions: dict[str, Any], obs_spec: ObservationSpec) -> TransitionArrays:
    """``EpisodeDataset.transitions()`` -> flat arrays with the vector fields concatenated in spec order."""
    vec_names = [n for n in obs_spec.names if n != "heightmap"]

    def vector(obs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(obs["heightmap"])
        parts = [np.asarray(obs[k], np.float32).reshape(n, -1) for k in vec_names]
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)

    obs, nxt = transitions["obs"], transitions["next_obs"]
    return TransitionArrays({
        "heightmap": np.asarray(obs["heightmap"], np.float32), "vector": vector(obs),
        "action": np.asarray(transitions["action"], np.float32),
        "reward": np.asarray(transitions["reward"], np.float32).reshape(-1),
        "next_heightmap": np.asarray(nxt["heightmap"], np.float32), "next_vector": vector(nxt),
        "done": np.asarray(transitions["done"], np.float32).reshape(-1)})


def load_datasets(paths: list[str], spec: PolicySpec) -> TransitionArrays:
    """Open, check (non-empty, matching specs, finite) and load every dataset; mixed into one set."""
    from robot_stack.recorder import EpisodeDataset

    parts = []
    for path in paths:
        ds = EpisodeDataset(path)
        ds.check(spec.observation, spec.action)
        arrays = dataset_arrays(ds.transitions(), spec.observation)
        check_transitions(arrays, path)
        parts.append(arrays)
    return TransitionArrays.concat(parts)


def network_config(spec: PolicySpec, network: dict[str, Any]) -> Any:
    from policies.networks import NetworkConfig
    from robot_stack import config

    data = {"family": spec.family, "group": spec.group, **network}
    return config.build(NetworkConfig, data, "network")


def build_algorithm(name: str, spec: PolicySpec, network: dict[str, Any], algo_cfg: dict[str, Any],
                    device: torch.device) -> Algorithm:
    """CQL, IQL or BC on the actor and critics ``policies.networks`` builds for ``spec``."""
    from policies.bc import BC, BCConfig
    from policies.cql import CQL, CQLConfig
    from policies.iql import IQL, IQLConfig
    from policies.networks import build_actor, build_critic
    from robot_stack import config

    net_cfg = network_config(spec, network)
    actor = build_actor(spec, net_cfg)

    def make_critic() -> nn.Module:
        return build_critic(spec, net_cfg)

    if name == "cql":
        return CQL(actor, make_critic, config.build(CQLConfig, algo_cfg, "cql"), spec.action.dim, device)
    if name == "iql":
        return IQL(actor, make_critic, config.build(IQLConfig, algo_cfg, "iql"), spec.action.dim, device,
                   make_value=lambda: build_critic(spec, net_cfg, twin=False))
    if name == "bc":
        return BC(actor, config.build(BCConfig, algo_cfg, "bc"), device)
    raise ValueError(f"unknown offline algorithm {name!r}; valid: cql, iql, bc")


def obs_to_tensors(obs: dict[str, np.ndarray], spec: ObservationSpec, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    hm = torch.as_tensor(np.asarray(obs["heightmap"], np.float32), device=device)[None]
    vec = np.concatenate([np.asarray(obs[n], np.float32).reshape(-1) for n in spec.names if n != "heightmap"])
    return hm, torch.as_tensor(vec, device=device)[None]


def torch_policy(actor: nn.Module, spec: PolicySpec, device: torch.device) -> Callable[[dict], np.ndarray]:
    """The deployed (deterministic) policy tanh(mean) as obs -> action."""

    @torch.no_grad()
    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        hm, vec = obs_to_tensors(obs, spec.observation, device)
        return deterministic_action(actor, hm, vec)[0].cpu().numpy()

    return act


def evaluate(policy: Callable[[dict], np.ndarray], env: Any, episodes: int, seed: int) -> dict[str, float]:
    """Success rate, mean return and mean length over ``episodes`` episodes (seeds seed, seed+1, ...)."""
    successes, returns, lengths = [], [], []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, steps, done, success = 0.0, 0, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total, steps = total + float(reward), steps + 1
            success = success or bool(info.get("success", False))
            done = terminated or truncated
        successes.append(success)
        returns.append(total)
        lengths.append(steps)
    return {"success_rate": float(np.mean(successes)) if episodes else float("nan"),
            "mean_return": float(np.mean(returns)) if episodes else float("nan"),
            "mean_length": float(np.mean(lengths)) if episodes else float("nan"), "episodes": episodes}


def random_policy(env: Any, seed: int) -> Callable[[dict], np.ndarray]:
    """Uniform actions in [-1, 1] over ``env``'s action space: the floor every trained policy is compared against."""
    rng = np.random.default_rng(seed)
    shape = env.action_space.shape
    return lambda obs: rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


# ---------------------------------------------------------------- checkpoints: save, and start from one

OFFLINE_FORMAT = "robot_stack.offline/1"


def save_run(algo: Algorithm, spec: PolicySpec, out: Path, summary: dict[str, Any], network: dict[str, Any],
             export: bool = True) -> dict[str, str]:
    """``checkpoint.pt`` (spec, network config, every module's weights), ``summary.json`` and ``policy.onnx``."""
    import json
    import os

    state = {"format": OFFLINE_FORMAT, "spec": spec.to_dict(), "network": dict(network),
             "algo": type(algo).__name__.lower(), "actor": algo.actor.state_dict(),
             "modules": {k: m.state_dict() for k, m in algo.modules().items()},
             "eval": summary.get("eval", {})}
    paths = {"checkpoint": str(out / "checkpoint.pt"), "summary": str(out / "summary.json")}
    tmp = out / "checkpoint.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "checkpoint.pt")
    try:
        from policies.export import export_actor
    except ImportError as exc:
        export = False
        summary["export_skipped"] = f"policies.export is not available ({exc})"
    if export:
        algo.actor.eval()
        export_actor(algo.actor, spec, out / "policy.onnx", {"algo": state["algo"], **summary.get("eval", {})})
        algo.actor.train()
        paths["onnx"] = str(out / "policy.onnx")
    summary["files"] = paths
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return paths


def read_init(path: str | Path) -> dict[str, Any]:
    from policies.checkpoint import read_state

    return read_state(path, SpecError)


def _critic_weights(state: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """Twin-critic weights in ``TwinQ`` naming from an offline or an online (SAC) checkpoint, if any."""
    if "modules" in state:
        return state["modules"].get("critic")
    critic = state.get("agent", {}).get("critic")
    if critic is None:
        return None
    rename = {"first.": "heads.0.", "second.": "heads.1."}
    out = {}
    for key, value in critic.items():
        prefix = next((p for p in rename if key.startswith(p)), None)
        if prefix is None:
            return None
        out[rename[prefix] + key[len(prefix):]] = value
    return out


def load_init(algo: Algorithm, path: str | Path, spec: PolicySpec) -> list[str]:
    """Start from a checkpoint's weights (offline or online-trained): the actor always, the critics (and target
    critics) when the checkpoint has matching ones. Refuses a checkpoint for another spec. Returns what loaded."""
    state = read_init(path)
    if "spec" in state:
        diffs = mismatches(state["spec"], spec.to_dict())
        if diffs:
            raise SpecError(f"{path}: checkpoint spec differs from this job's: " + "; ".join(diffs))
    actor = state.get("actor", state.get("agent", {}).get("actor"))
    if actor is None:
        raise SpecError(f"{path}: checkpoint has no actor weights (keys: {sorted(state)})")
    algo.actor.load_state_dict(actor)
    loaded = ["actor"]
    critic = _critic_weights(state)
    modules = algo.modules()
    if critic is not None and "critic" in modules:
        modules["critic"].load_state_dict(critic)
        modules["target_critic"].load_state_dict(critic)
        loaded.append("critic")
    if "value" in modules and "modules" in state and "value" in state["modules"]:
        modules["value"].load_state_dict(state["modules"]["value"])
        loaded.append("value")
    return loaded
