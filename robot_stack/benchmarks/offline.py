"""robot-stack bench offline: gradient steps/s of CQL / IQL / BC per network family, and dataset batch throughput.

Baselines measured in the same run: each algorithm on the plain ``cnn`` family (the ratio is what the
equivariant network costs), CQL with the critic re-encoding the heightmap for every sampled action
(``encode_once: false``, the ratio is what encoding once saves), and for the data path the in-memory sampler
of ``policies.data`` (the ratio is what reading batches from the zarr store costs).
Options (key=value): ``size``, ``batch``, ``steps``, ``families`` (comma-separated), ``algos``, ``device``
(cpu | cuda | auto).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.benchmarks import BenchReport

FAMILIES = ("cnn", "exact", "relaxed")
ALGOS = ("bc", "iql", "cql")


def _options(quick: bool, options: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"size": 32 if quick else 64, "batch": 16 if quick else 64, "steps": 2 if quick else 10,
                            "families": ",".join(FAMILIES), "algos": ",".join(ALGOS), "device": "cpu",
                            "episodes": 30 if quick else 200}
    for item in options:
        key, _, value = item.partition("=")
        if key not in opts:
            raise ValueError(f"bench offline: unknown option {key!r}; valid: {sorted(opts)}")
        opts[key] = type(opts[key])(value)
    return opts


def _random_batch(spec: Any, batch: int, device: Any, rng: np.random.Generator) -> Any:
    from policies.core import Batch

    size = spec.observation.heightmap_size
    vec = spec.observation.vector_dim

    def arr(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32)

    data = {"heightmap": arr(batch, 1, size, size) * 0.1, "vector": arr(batch, vec), "action": arr(batch, 5) * 2 - 1,
            "reward": arr(batch), "next_heightmap": arr(batch, 1, size, size) * 0.1, "next_vector": arr(batch, vec),
            "done": np.zeros(batch, np.float32)}
    return Batch.from_numpy(data, device)


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
    report.notes.append(f"heightmap {opts['size']} px, batch {opts['batch']}, {opts['steps']} timed steps after one "
                        f"warm-up, default NetworkConfig widths; device {opts['device']}")
    bench_data(report, opts, seconds=1.0 if quick else 3.0)
    bench_updates(report, opts)
    return report
