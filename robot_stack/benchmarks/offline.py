"""robot-stack bench offline: gradient steps/s of CQL / IQL / BC per network family, and dataset batch throughput.

Baselines measured in the same run: each algorithm on the plain ``cnn`` family (the ratio is what the
equivariant network costs), CQL with the critic re-encoding the heightmap for every sampled action
(``encode_once: false``, the ratio is what encoding once saves), and for the data path the in-memory sampler
of ``policies.data`` (the ratio is what reading batches from the zarr store costs).
Options (key=value): ``size``, ``batch``, ``steps``, ``families`` (comma-separated), ``algos``, ``device``
(cpu | cuda | auto), ``config``.

``config=offline_push`` (a launch file) times what one grid cell of an offline sweep costs at that file's
settings (task, view, heightmap size, network, algorithm configs, batch size) on one torch thread: ms per update
of each algo and family, wall clock (``update_ms.<algo>_<family>``) and CPU time (``update_cpu_ms``: what a core of
its own takes on a busy machine), with its ratio to the plain cnn's; CPU ms to sample and turn a batch, seconds to
build the env and CPU seconds per evaluation episode (each family's policy, and the random baseline), and from
these ``cell_cpu_s.<algo>_<family>``: a trial at the file's ``steps`` and ``eval_episodes`` (evaluation episodes
of an untrained policy, which run to the horizon: an upper bound). ``size`` and ``batch`` are then the file's.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.benchmarks import BenchReport

FAMILIES = ("cnn", "exact", "relaxed")
ALGOS = ("bc", "iql", "cql")
SAMPLES = 100  # batches timed per family


def _options(quick: bool, options: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"size": 32 if quick else 64, "batch": 16 if quick else 64, "steps": 2 if quick else 10,
                            "families": ",".join(FAMILIES), "algos": ",".join(ALGOS), "device": "cpu",
                            "episodes": 30 if quick else 200, "config": ""}
    for item in options:
        key, _, value = item.partition("=")
        if key not in opts:
            raise ValueError(f"bench offline: unknown option {key!r}; valid: {sorted(opts)}")
        opts[key] = type(opts[key])(value)
    return opts


def _random_arrays(spec: Any, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` transitions of random values in the spec's shapes."""
    size, channels = spec.observation.heightmap_size, spec.observation.heightmap_channels
    vec = spec.observation.vector_dim

    def arr(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32)

    return {"heightmap": arr(n, channels, size, size) * 0.1, "vector": arr(n, vec), "action": arr(n, 5) * 2 - 1,
            "reward": arr(n), "next_heightmap": arr(n, channels, size, size) * 0.1, "next_vector": arr(n, vec),
            "done": np.zeros(n, np.float32)}


def _random_batch(spec: Any, batch: int, device: Any, rng: np.random.Generator) -> Any:
    from policies.core import Batch

    return Batch.from_numpy(_random_arrays(spec, batch, rng), device)


def bench_updates(report: BenchReport, opts: dict[str, Any]) -> None:
    import torch

    import sim
    from policies.core import pick_device
    from policies.registry import build_algorithm

    device = pick_device(opts["device"])
    rng = np.random.default_rng(0)
    families = [f for f in opts["families"].split(",") if f]
    algos = [a for a in opts["algos"].split(",") if a]
    for family in families:
        spec = sim.policy_spec(sim.make_env("toy_reach", heightmap_size=opts["size"]), "C8", family)
        batch = _random_batch(spec, opts["batch"], device, rng)
        runs = [(name, name, {}) for name in algos]
        if "cql" in algos:  # baseline: the critic re-encodes the heightmap for each of the 1 + 3N actions
            runs.append(("cql_reencode", "cql", {"encode_once": False}))
        for label, name, algo_cfg in runs:
            torch.manual_seed(0)
            algo = build_algorithm(name, spec, {}, algo_cfg, device)
            algo.update(batch)  # warm-up (escnn builds its filters, CUDA kernels load)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(opts["steps"]):
                algo.update(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = opts["steps"] / (time.perf_counter() - t0)
            report.add(f"{label}_{family}_steps_per_s", rate, f"steps/s ({device.type})")
        if "cql" in algos:
            report.add(f"cql_{family}_encode_once_speedup", report.figures[f"cql_{family}_steps_per_s"]
                       / report.figures[f"cql_reencode_{family}_steps_per_s"], "x vs re-encoding")
    for name in algos:
        base = report.figures.get(f"{name}_cnn_steps_per_s")
        for family in families:
            got = report.figures.get(f"{name}_{family}_steps_per_s")
            if base and got and family != "cnn":
                report.add(f"{name}_{family}_vs_cnn", got / base, "x")


def _update_ms(algo: Any, batch: Any, steps: int, device: Any) -> tuple[float, float]:
    """Milliseconds per ``algo.update`` after one warm-up (escnn builds its filters then): wall clock, and this
    process's CPU time (on one torch thread, what a core of its own would take however busy the machine is)."""
    import torch

    algo.update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        algo.update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / steps, 1000 * (time.process_time() - c0) / steps


def bench_launch(report: BenchReport, opts: dict[str, Any], quick: bool) -> None:
    """What one offline grid cell costs at the launch file ``opts["config"]``'s settings (module docstring)."""
    import torch

    import sim
    from policies.core import pick_device
    from robot_stack import config
    from robot_stack.jobs.evaluation import evaluate, random_policy
    from robot_stack.jobs.offline import OfflineJob

    torch.set_num_threads(1)
    job = config.load(OfflineJob, opts["config"], [])
    device = pick_device(opts["device"])
    t0 = time.perf_counter()
    env = sim.make_env(job.task, **job.env)
    report.add("env_build_s", time.perf_counter() - t0, "s")
    episodes = 1 if quick else 3
    algos = [a for a in opts["algos"].split(",") if a]
    families = [f for f in opts["families"].split(",") if f]
    for family in families:
        _bench_family(report, job, env, family, algos, device, opts["steps"], episodes)
    c0 = time.process_time()
    evaluate(random_policy(env, 0), env, episodes, 0)
    report.add("eval_episode_cpu_s.random", (time.process_time() - c0) / episodes, "CPU s/episode")
    _cell_figures(report, job, algos, families)
    env.close()


def _bench_family(report: BenchReport, job: Any, env: Any, family: str, algos: list[str], device: Any, steps: int,
                  episodes: int) -> None:
    """Batch sampling (turned as the offline job turns them: ``jobs.offline.augments``), each algorithm's update,
    and evaluation episodes of the family's actor."""
    import torch

    import sim
    from policies.core import Batch
    from policies.data import TransitionArrays
    from policies.registry import build_algorithm
    from robot_stack.jobs.evaluation import evaluate, torch_policy
    from robot_stack.jobs.offline import augments
    from robot_stack.symmetry import Group

    rng = np.random.default_rng(0)
    net = {**job.network, "family": family, "critic_family": ""}
    spec = sim.policy_spec(env, net.get("group", "C8"), family)
    data = TransitionArrays(_random_arrays(spec, 4 * job.batch_size, rng))
    group = Group.parse(spec.group) if augments(dataclasses.replace(job, network=net), spec) else None
    c0 = time.process_time()
    for _ in range(SAMPLES):
        data.sample(job.batch_size, rng, group)
    report.add(f"sample_cpu_ms.{family}", 1000 * (time.process_time() - c0) / SAMPLES, "CPU ms/batch")
    batch = Batch.from_numpy(data.sample(job.batch_size, rng, group), device)
    for name in algos:
        torch.manual_seed(0)
        algo = build_algorithm(name, spec, net, getattr(job, name), device)
        wall, cpu = _update_ms(algo, batch, steps, device)
        report.add(f"update_ms.{name}_{family}", wall, "ms/update")
        report.add(f"update_cpu_ms.{name}_{family}", cpu, "CPU ms/update")
    c0 = time.process_time()
    evaluate(torch_policy(algo.actor, spec, device), env, episodes, 0)
    report.add(f"eval_episode_cpu_s.{family}", (time.process_time() - c0) / episodes, "CPU s/episode")


def _cell_figures(report: BenchReport, job: Any, algos: list[str], families: list[str]) -> None:
    """Each trial's projected CPU seconds at the file's steps and eval episodes (one env build; the random baseline is
    evaluated once per seed of a sweep, not per trial), and each update's ratio to the plain cnn's."""
    f = report.figures
    for family in families:
        evals = job.eval_episodes * f[f"eval_episode_cpu_s.{family}"] + f["env_build_s"]
        for name in algos:
            update_s = (f[f"update_cpu_ms.{name}_{family}"] + f[f"sample_cpu_ms.{family}"]) / 1000
            report.add(f"cell_cpu_s.{name}_{family}", job.steps * update_s + evals, "CPU s/trial")
            base = f.get(f"update_cpu_ms.{name}_cnn")
            if base and family != "cnn":
                report.add(f"update_vs_cnn.{name}_{family}", f[f"update_cpu_ms.{name}_{family}"] / base, "x")


def _record(path: Path, size: int, episodes: int) -> None:
    from robot_stack.recorder import EpisodeRecorder
    from sim.toy import make_toy_env, make_toy_expert

    env = make_toy_env(heightmap_size=size)
    expert = make_toy_expert(env, noise=0.2, seed=0)
    obs_spec, action_spec, _ = env.policy_spec_parts
    with EpisodeRecorder(path, obs_spec, action_spec, {"task": "toy_reach"}, when_full="wait") as rec:
        for ep in range(episodes):
            obs, _ = env.reset(seed=ep)
            rec.start_episode()
            done = False
            while not done:
                action = expert.act(obs, env)
                nxt, reward, terminated, truncated, _ = env.step(action)
                rec.add_step(obs, action, reward, {"terminal": terminated})
                obs, done = nxt, terminated or truncated
            rec.end_episode()


def _rate(fn: Any, seconds: float) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_data(report: BenchReport, opts: dict[str, Any], seconds: float) -> None:
    import sim
    from policies.data import dataset_arrays
    from robot_stack.recorder import EpisodeDataset
    from robot_stack.symmetry import Group

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        _record(path, opts["size"], opts["episodes"])
        rng, batch, group = np.random.default_rng(0), opts["batch"], Group.parse("C8")
        on_disk = EpisodeDataset(path, cache=False)
        cached = EpisodeDataset(path, cache=True)
        spec = sim.policy_spec(sim.make_env("toy_reach", heightmap_size=opts["size"]), "C8", "relaxed")
        memory = dataset_arrays(cached.transitions(), spec.observation)
        report.add("dataset_transitions", len(memory), "transitions")
        report.add("zarr_sample_batches_per_s", _rate(lambda: on_disk.sample(batch, rng), seconds), "batches/s")
        report.add("zarr_cached_sample_batches_per_s", _rate(lambda: cached.sample(batch, rng), seconds), "batches/s")
        report.add("memory_sample_batches_per_s", _rate(lambda: memory.sample(batch, rng), seconds), "batches/s")
        report.add("memory_sample_c8_rotated_batches_per_s", _rate(lambda: memory.sample(batch, rng, group), seconds),
                   "batches/s")
        base = report.figures["memory_sample_batches_per_s"]
        report.add("zarr_vs_memory", report.figures["zarr_sample_batches_per_s"] / base, "x")


def run(quick: bool, options: list[str]) -> BenchReport:
    opts = _options(quick, options)
    report = BenchReport("offline")
    if opts["config"]:
        report.notes.append(f"launch file {opts['config']}'s settings, {opts['steps']} timed updates after one "
                            f"warm-up, one torch thread; device {opts['device']}")
        bench_launch(report, opts, quick)
        return report
    report.notes.append(f"heightmap {opts['size']} px, batch {opts['batch']}, {opts['steps']} timed steps after one "
                        f"warm-up, default NetworkConfig widths; device {opts['device']}")
    bench_data(report, opts, seconds=1.0 if quick else 3.0)
    bench_updates(report, opts)
    return report
