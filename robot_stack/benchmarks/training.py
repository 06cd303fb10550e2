"""``robot-stack bench training``: SAC updates/s per network family and env steps/s, with same-run baselines.

Figures per family (CPU, or the CUDA GPU when present): SAC updates/s at batch 64 (critic + actor +
temperature + target update) and the ratio against the ``exact`` family measured in the same run
(the issue's relaxed/exact ratio). Env steps/s of the toy reach task with the SAC actor choosing
actions, against the same env driven by random actions (the baseline: env cost alone).
Options: ``size=64`` (heightmap pixels), ``group=C8``, ``families=relaxed,exact,cnn,cnn_aug``.
"""

from __future__ import annotations

import time

import numpy as np

from robot_stack.benchmarks import BenchReport

DEFAULT_FAMILIES = ("relaxed", "exact", "cnn", "cnn_aug")


def _options(options: list[str]) -> dict[str, str]:
    out = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or key not in ("size", "group", "families"):
            raise ValueError(f"bench training: unknown option {item!r}; valid: size=N group=CN families=a,b")
        out[key] = value
    return out


def _agent(family: str, group: str, size: int):
    import torch

    import sim
    from policies.core import pick_device
    from policies.registry import build_algorithm
    from policies.replay_buffer import ReplayBuffer, Transition
    from policies.sac import SACConfig

    env = sim.make_env("toy_reach", heightmap_size=size)
    spec = sim.policy_spec(env, group, family)
    torch.manual_seed(0)
    agent = build_algorithm("sac", spec, {"family": family, "group": group}, SACConfig(batch_size=64),
                            pick_device("auto"), 0)
    buf = ReplayBuffer(256, spec.observation, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(256):
        nxt, r, term, trunc, _ = env.step(env.action_space.sample())
        buf.add(Transition(obs, np.zeros(5, np.float32), r, nxt, 0.99))
        obs = env.reset()[0] if term or trunc else nxt
    return env, agent, buf


def _rate(fn, seconds: float, min_calls: int = 3) -> float:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def _env_rate(env, policy, seconds: float) -> float:
    obs = [env.reset(seed=1)[0]]

    def step() -> None:
        o, _, term, trunc, _ = env.step(policy(obs[0]))
        obs[0] = env.reset()[0] if term or trunc else o

    return _rate(step, seconds, 20)


def run(quick: bool, options: list[str]) -> BenchReport:
    import torch

    from robot_stack.jobs.evaluation import random_policy

    opts = _options(options)
    size = int(opts.get("size", 64))
    group = opts.get("group", "C8")
    families = tuple(opts["families"].split(",")) if "families" in opts else DEFAULT_FAMILIES
    seconds = 1.0 if quick else 10.0
    report = BenchReport("training")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report.notes.append(f"device {device}, heightmap {size}px, group {group}, batch 64, torch threads "
                        f"{torch.get_num_threads()}; {seconds:g} s per figure")
    rates: dict[str, float] = {}
    for family in families:
        env, agent, buf = _agent(family, group, size)
        batch = buf.sample(64)
        rates[family] = _rate(lambda a=agent, b=batch: a.update(b), seconds)
        report.add(f"sac_updates_per_s.{family}", rates[family], "1/s")
        if family == families[0]:
            report.add("env_steps_per_s.toy_random", _env_rate(env, random_policy(env, 0), seconds), "1/s")
            act = lambda o, a=agent: a.act(o["heightmap"][None], o["gripper"][None])[0]  # noqa: E731
            report.add(f"env_steps_per_s.toy_with_{family}_actor", _env_rate(env, act, seconds), "1/s")
    if "exact" in rates:
        for family in families:
            if family != "exact":
                report.add(f"update_time_ratio.{family}_vs_exact", rates["exact"] / rates[family], "x")
    report.notes.append("issue 9 names no speed target for this area; ratio > 1 = slower than exact")
    return report
