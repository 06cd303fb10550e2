"""robot-stack collect CONFIG: record scripted-expert or ONNX-policy episodes in sim to a zarr store."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HELP = "record scripted-expert or policy episodes in sim into a zarr episode store"
DESCRIPTION = HELP + """

Examples:
  robot-stack collect collect_lift                               # launch/collect_lift.yaml
  robot-stack collect collect_push episodes=50 noise=0.2 out=runs/push.zarr
  robot-stack collect collect_lift policy=runs/lift.onnx policy_id=lift-relaxed policy_version=3

Episode i is reset with seed + i; the seed, the sim config and the initial layout go into the
episode's metadata so that 'robot-stack replay' can reset identically."""


@dataclass
class CollectJob:
    task: str = "lift"
    out: str = "runs/collect_{task}.zarr"
    episodes: int = 10
    policy: str = "expert"  # "expert" (sim.make_expert) or the path of an exported .onnx policy package
    noise: float = 0.1  # Gaussian noise std added to the expert's actions
    seed: int = 0
    max_steps: int = 0  # 0 -> the task's horizon
    record_depth: bool = False  # also store the raw depth frame of every step
    policy_id: str = ""
    policy_version: str = ""
    sim: dict[str, Any] = field(default_factory=dict)  # sim.config.SimConfig keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file or a name in launch/ (e.g. collect_lift)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. episodes=50 sim.variant=tilt)")


def run(args: argparse.Namespace) -> int:
    from robot_stack.config import ConfigError, load

    job = load(CollectJob, args.config, args.overrides)
    if job.episodes < 1 or job.noise < 0 or job.max_steps < 0:
        raise ConfigError(f"episodes must be >= 1, noise and max_steps >= 0; got {job.episodes}, {job.noise}, "
                          f"{job.max_steps}")
    summary = collect(job)
    print(f"recorded {summary['committed']} episodes ({summary['steps']} steps, success "
          f"{summary['success_rate']:.0%}) into {summary['out']}")
    return 0


def collect(job: CollectJob) -> dict[str, Any]:
    """Run the job; returns a summary (committed episodes, steps, success rate, store path)."""
    from rich.progress import track

    import sim
    from robot_stack.recorder import EpisodeRecorder

    if "seed" in job.sim:
        from robot_stack.config import ConfigError

        raise ConfigError("sim.seed is set per episode from 'seed'; remove it from sim")
    env = sim.make_env(job.task, **job.sim)
    obs_spec, action_spec, hm_spec = env.policy_spec_parts
    act, policy_meta = _policy(job, env, obs_spec, action_spec, hm_spec)
    out = job.out.format(task=job.task)
    meta = {"task": job.task, "variant": job.sim.get("variant", "none"), "sim": dict(job.sim),
            "control_hz": float(getattr(env.cfg, "control_freq", 0) or 0), "camera": env.camera.spec.to_dict(),
            "heightmap": hm_spec.to_dict(), **policy_meta}
    successes, steps = [], 0
    with EpisodeRecorder(out, obs_spec, action_spec, meta, when_full="wait") as rec:
        for i in track(range(job.episodes), description=f"collecting {job.task}"):
            ok, n = _episode(env, rec, act, job, job.seed + i)
            successes.append(ok)
            steps += n
        rec.flush()
        committed = rec.stats["episodes_committed"]
    env.close()
    return {"committed": committed, "steps": steps, "success_rate": float(np.mean(successes)), "out": out}


def _policy(job: CollectJob, env: Any, obs_spec: Any, action_spec: Any, hm_spec: Any):
    import sim

    if job.policy == "expert":
        expert = sim.make_expert(job.task, env, noise=job.noise, seed=job.seed)

        def act_expert(obs: dict[str, np.ndarray], reset: bool = False) -> np.ndarray:
            if reset:
                expert.reset()
                return np.zeros(0)
            return expert.act(obs, env)

        return act_expert, {"policy_id": job.policy_id or f"expert-{job.task}",
                            "policy_version": job.policy_version or "scripted", "noise": job.noise}
    from robot_stack.runtime.package import load_policy_package

    policy = load_policy_package(job.policy)
    if obs_spec != policy.spec.observation or action_spec != policy.spec.action:
        from robot_stack.specs import SpecError, mismatches

        raise SpecError(f"{job.policy} does not fit task {job.task}: " + "; ".join(
            mismatches(obs_spec, policy.spec.observation) + mismatches(action_spec, policy.spec.action)))
    rng = np.random.default_rng(job.seed)

    def act_policy(obs: dict[str, np.ndarray], reset: bool = False) -> np.ndarray:
        if reset:
            return np.zeros(0)
        a = np.asarray(policy.act(obs), dtype=np.float32)
        return np.clip(a + rng.normal(0, job.noise, a.shape), -1, 1).astype(np.float32) if job.noise else a

    version = job.policy_version or str(getattr(policy, "metadata", {}).get("version", ""))
    return act_policy, {"policy_id": job.policy_id or str(job.policy), "policy_version": version, "noise": job.noise}


def _episode(env: Any, rec: Any, act: Any, job: CollectJob, seed: int) -> tuple[bool, int]:
    obs, info = env.reset(seed=seed)
    act(obs, reset=True)
    rec.start_episode({"seed": seed, "layout": info.get("layout")})
    limit = job.max_steps or int(getattr(env, "horizon", 0) or 10**9)
    success, n = bool(info.get("success", False)), 0
    for _ in range(limit):
        depth = env.render() if job.record_depth else None
        t0 = time.perf_counter()
        action = act(obs)
        latency = time.perf_counter() - t0
        next_obs, reward, terminated, truncated, info = env.step(action)
        extra = {"terminal": bool(terminated), "latency_policy": latency}
        if depth is not None:
            extra["depth"] = depth
        rec.add_step(obs, action, float(reward), extra)
        obs, n, success = next_obs, n + 1, bool(info.get("success", False))
        if terminated or truncated:
            break
    rec.end_episode(success)
    return success, n
