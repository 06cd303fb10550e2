"""The collect job: record scripted-expert or ONNX-policy episodes in sim into a zarr episode store."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import sim
from robot_stack.config import ConfigError, check_choice
from robot_stack.jobs.envs import resolved_env

LABELS = ("policy", "expert")  # what a step records: the executed action, or the scripted expert's at that state


@dataclass
class CollectJob:
    task: str = "lift"
    out: str = "runs/collect_{task}.zarr"
    episodes: int = 10
    transitions: int = 0  # > 0: stop at exactly this many transitions instead of after `episodes`
    # one store per size, each of exactly that many transitions, with their quality stated (jobs/offline_data.py)
    sizes: list[int] = field(default_factory=list)
    policy: str = "expert"  # "expert" (sim.make_expert) or the path of an exported .onnx policy package
    noise: float | list[float] = 0.1  # Gaussian std added to the actions; a list: episode i uses noise[i % len]
    seed: int = 0
    max_steps: int = 0  # 0 -> the task's horizon
    record_depth: bool = False  # also store the raw depth frame of every step
    policy_id: str = ""
    policy_version: str = ""
    # "expert": the scripted expert's noise-free action at each visited state is what gets recorded, while the policy
    # (an .onnx package: DAgger-style relabelling) or the noisy expert (noise > 0: DART-style, demonstrations that show
    # how to recover) acts; for behaviour cloning. The rewards follow the executed actions.
    label: str = "policy"
    sim: dict[str, Any] = field(default_factory=dict)  # sim.config.SimConfig keys

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.max_steps < 0 or self.transitions < 0:
            raise ValueError(f"episodes must be >= 1, max_steps and transitions >= 0; got {self.episodes}, "
                             f"{self.max_steps}, {self.transitions}")
        noise_levels(self)
        if any(int(n) < 1 for n in self.sizes) or len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"sizes must be distinct transition counts >= 1, got {self.sizes}")
        if self.sizes and self.transitions:
            raise ConfigError("set either sizes (one store per size) or transitions (one store), not both")
        check_choice("label", self.label, LABELS)
        if self.label == "expert" and self.policy == "expert" and max(noise_levels(self)) == 0:
            raise ConfigError("label: expert with policy: expert records what the expert did anyway: set noise > 0 "
                              "(the noisy expert acts, the clean one labels) or policy to an .onnx package")
        if "seed" in self.sim:
            raise ConfigError("sim.seed is set per episode from 'seed'; remove it from sim")
        sim.env_config(self.task, self.sim, "sim")


def noise_levels(job: CollectJob) -> list[float]:
    """The job's noise as a non-empty list of stds >= 0 (ConfigError otherwise)."""
    levels = [float(x) for x in job.noise] if isinstance(job.noise, list) else [float(job.noise)]
    if not levels or any(not np.isfinite(x) or x < 0 for x in levels):
        raise ConfigError(f"noise must be a number >= 0 or a non-empty list of them, got {job.noise!r}")
    return levels


def recorded_settings(job: CollectJob) -> dict[str, Any]:
    """What decides a store's episodes, written into its metadata: a store is kept for a job (``jobs.offline_data``)
    only if it was recorded with the same, the env as it resolves (a task default that changed counts)."""
    return {"task": job.task, "env": resolved_env(job.task, job.sim), "policy": job.policy, "label": job.label,
            "noise": job.noise, "seed": job.seed, "max_steps": job.max_steps}


def collect(job: CollectJob) -> dict[str, Any]:
    """Run the job; returns a summary (committed episodes, steps, transitions, success rate, store path)."""
    from robot_stack.recorder import EpisodeRecorder, store

    if job.sizes:
        raise ConfigError(f"sizes {job.sizes}: collect records one store; robot_stack.jobs.offline_data."
                          f"make_datasets(job) records one per size (as `robot-stack collect` does with sizes)")
    levels = noise_levels(job)
    out = job.out.format(task=job.task, transitions=job.transitions)
    if job.transitions and store.is_store(out):
        raise ConfigError(f"{out} already holds a store; 'transitions' counts the whole store, so give a new out")
    env = sim.make_env(job.task, **job.sim)
    obs_spec, action_spec, hm_spec = env.policy_spec_parts
    act, policy_meta = _policy(job, env, obs_spec, action_spec, hm_spec)
    # the expert labels with no noise: reset(noise=0.0) is what _episode calls on it
    label = _expert_actor(job, env) if job.label == "expert" else None
    meta = {**recorded_settings(job), "target_transitions": job.transitions, "variant": job.sim.get("variant", "none"),
            "sim": dict(job.sim),
            "control_hz": float(getattr(env.cfg, "control_freq", 0) or 0), "camera": env.camera.spec.to_dict(),
            "heightmap": hm_spec.to_dict(), **policy_meta}
    with EpisodeRecorder(out, obs_spec, action_spec, meta, when_full="wait", keep_depth=job.record_depth) as rec:
        successes, steps, transitions = record_episodes(env, rec, act, job, levels, label)
        rec.flush()
        committed = rec.stats["episodes_committed"]
    env.close()
    return {"committed": committed, "steps": steps, "transitions": transitions,
            "success_rate": float(np.mean(successes)), "out": out}


def record_episodes(env: Any, rec: Any, act: Any, job: CollectJob, levels: list[float], label: Any = None
                    ) -> tuple[list[bool], int, int]:
    """Episodes until ``job.episodes`` (or ``job.transitions`` when set); (successes, steps, transitions)."""
    from rich.progress import Progress

    successes, steps, transitions, idle = [], 0, 0, 0
    total = job.transitions or job.episodes
    with Progress() as bar:
        task = bar.add_task(f"collecting {job.task}", total=total)
        for i in itertools.count():
            left = job.transitions - transitions if job.transitions else None
            if (left is None and i >= job.episodes) or left == 0:
                break
            ok, n, t = _episode(env, rec, act, job, job.seed + i, levels[i % len(levels)], left, label)
            successes.append(ok)
            steps, transitions = steps + n, transitions + t
            idle = 0 if t else idle + 1
            if idle >= 10:  # only if every episode ends on its second step while one transition is missing
                raise RuntimeError(f"{job.task}: 10 episodes in a row added no transition; cannot reach "
                                   f"{job.transitions} transitions exactly")
            bar.update(task, completed=transitions if job.transitions else i + 1)
    return successes, steps, transitions


def _policy(job: CollectJob, env: Any, obs_spec: Any, action_spec: Any, hm_spec: Any):
    if job.policy == "expert":
        return _expert_actor(job, env), {"policy_id": job.policy_id or f"expert-{job.task}",
                            "policy_version": job.policy_version or "scripted", "noise": job.noise}
    from robot_stack.runtime.package import load_policy_package

    policy = load_policy_package(job.policy)
    if obs_spec != policy.spec.observation or action_spec != policy.spec.action:
        from robot_stack.specs import SpecError, mismatches

        raise SpecError(f"{job.policy} does not fit task {job.task}: " + "; ".join(
            mismatches(obs_spec, policy.spec.observation) + mismatches(action_spec, policy.spec.action)))
    rng = np.random.default_rng(job.seed)
    episode = {"noise": 0.0}

    def act_policy(obs: dict[str, np.ndarray], reset: bool = False, noise: float = 0.0) -> np.ndarray:
        if reset:
            episode["noise"] = noise
            return np.zeros(0)
        a = np.asarray(policy.act(obs), dtype=np.float32)
        std = episode["noise"]
        return np.clip(a + rng.normal(0, std, a.shape), -1, 1).astype(np.float32) if std else a

    version = job.policy_version or str(getattr(policy, "metadata", {}).get("version", ""))
    return act_policy, {"policy_id": job.policy_id or str(job.policy), "policy_version": version, "noise": job.noise}


def _episode(env: Any, rec: Any, act: Any, job: CollectJob, seed: int, noise: float,
             left: int | None, label: Any = None) -> tuple[bool, int, int]:
    """One episode; ``left``: transitions still wanted (None: no limit); ``label``: what to record instead of the
    executed action (None: the executed action). Returns (success, steps, transitions)."""
    obs, info = env.reset(seed=seed)
    act(obs, reset=True, noise=noise)
    if label is not None:
        label(obs, reset=True)
    rec.start_episode({"seed": seed, "layout": info.get("layout"), "noise": noise})
    horizon = job.max_steps or int(getattr(env, "horizon", 0) or 10**9)
    # Stopping after step k without a terminal gives k - 1 transitions, so left + 1 steps can give left.
    limit = horizon if left is None else min(horizon, left + 1)
    success, n, terminal, cut = bool(info.get("success", False)), 0, False, False
    for k in range(1, limit + 1):
        depth = env.render() if job.record_depth else None
        arm = observed_arm(env)
        t0 = time.perf_counter()
        action = act(obs)
        latency = time.perf_counter() - t0
        recorded = action if label is None else label(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if terminated and left is not None and k > left:
            cut = True  # a terminal step here would make left + 1: drop it, the next episode fills the gap
            break
        extra = {"terminal": bool(terminated), "latency_policy": latency}
        if depth is not None:
            extra["depth"] = depth
        if arm is not None:
            extra["arm"] = arm
        rec.add_step(obs, recorded, float(reward), extra)
        obs, n, terminal, success = next_obs, k, bool(terminated), bool(info.get("success", False))
        if terminated or truncated:
            break
    cut = cut or (left is not None and not terminal and n == left + 1 and n < horizon)
    rec.end_episode(success, cut=cut)
    return success, n, n if terminal else max(n - 1, 0)


def observed_arm(env: Any) -> np.ndarray | None:
    """The arm state the env's last observation was built from (``robot_stack.observation.arm_vector``), which lets
    ``robot-stack data reproject`` rebuild the observation in another view; None for envs without an arm."""
    from robot_stack.observation import arm_vector

    state = env.observed_arm_state() if hasattr(env, "observed_arm_state") else None
    return None if state is None else arm_vector(state)


def _expert_actor(job: CollectJob, env: Any):
    """The scripted expert as ``act(obs, reset=False, noise=0.0)``: it reads the sim's state and keeps its own phase
    from step to step, so it is called once per step, whether it drives or only labels the states a policy visits."""
    expert = sim.make_expert(job.task, env, seed=job.seed)

    def act(obs: dict[str, np.ndarray], reset: bool = False, noise: float = 0.0) -> np.ndarray:
        if reset:
            expert.reset()
            expert.noise = noise
            return np.zeros(0)
        return expert.act(obs, env)

    return act
