"""robot-stack bench networks: per family, forward and forward+backward time per batch at 64 and 128 px, and
the exported actor's onnxruntime latency at batch 1. Baselines in the same run: the exact family (for the
relaxed ones) and the plain CNN. Options: group=C8 batch=32 sizes=64,128 threads=2 (torch) ort_threads=1.

The exported actors run in sessions built exactly as the robot PC builds them (``runtime.package._session``):
``ort_threads`` intra-op threads, default 1. Two intra-op threads on 2 cores gain nothing at batch 1 (p50
0.49 vs 0.51 ms at 64 px) but wreck the tail: the pool's worker spins after each run and must be scheduled
for every run, so whenever the other core is busy a run waits a scheduler slice (p99 9.6-13 ms vs 0.8-1.9 ms
with one thread, same run, loaded machine; see docs/deploy.md)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from robot_stack.benchmarks import BenchReport, percentiles_ms

FAMILIES = ("cnn", "exact", "relaxed", "relaxed_steerable")


def _options(options: list[str], quick: bool) -> dict:
    out = {"group": "C8", "batch": 8 if quick else 64, "sizes": "64,128", "threads": 2, "ort_threads": 1}
    for item in options:
        key, _, value = item.partition("=")
        if key not in out or not value:
            raise SystemExit(f"bench networks: unknown option {item!r}; valid: {', '.join(f'{k}=...' for k in out)}")
        out[key] = type(out[key])(value)
    out["sizes"] = [int(s) for s in str(out["sizes"]).split(",")]
    return out


def _spec(size: int):
    from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec

    hs = HeightmapSpec(size)
    return PolicySpec(ObservationSpec.create(hs), ActionSpec(), hs)


def _interleaved(calls: dict[str, object], rounds: int, warmup: int = 1) -> dict[str, np.ndarray]:
    """Time every call once per round, round-robin, so that load from other processes hits all alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    out = {name: np.empty(rounds) for name in calls}
    for r in range(rounds):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            out[name][r] = time.perf_counter() - t
    return out


def _torch_calls(actor, size: int, batch: int):
    import torch

    hm, vec = torch.rand(batch, 1, size, size), torch.rand(batch, 2)
    actor.train()

    def fwd():
        with torch.no_grad():
            actor(hm, vec)

    def step():
        actor.zero_grad(set_to_none=True)
        mean, log_std = actor(hm, vec)
        (mean.square().mean() + log_std.mean() + actor.regularization()).backward()

    return fwd, step


def _onnx_call(actor, size: int, threads: int):
    import onnxruntime as ort

    from policies.export import export_actor
    from robot_stack.runtime.package import _session

    with tempfile.TemporaryDirectory() as tmp:
        path = export_actor(actor, actor.spec, Path(tmp) / "a.onnx", {"bench": True})
        session = _session(path, ort, threads)  # the robot PC's session options
    feed = {"heightmap": np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32),
            "gripper": np.zeros((1, 2), np.float32)}
    return lambda: session.run(["action"], feed)


def run(quick: bool, options: list[str]) -> BenchReport:
    import torch

    from policies.networks import NetworkConfig, build_actor

    opt = _options(options, quick)
    torch.set_num_threads(opt["threads"])
    report = BenchReport("networks")
    t0 = time.perf_counter()
    rounds, onnx_rounds = (3, 150) if quick else (10, 1000)
    b = opt["batch"]
    for size in opt["sizes"]:
        torch_calls, onnx_calls = {}, {}
        for family in FAMILIES:
            torch.manual_seed(0)
            actor = build_actor(_spec(size), NetworkConfig(family=family, group=opt["group"]))
            if size == opt["sizes"][0]:
                report.add(f"params_actor_{family}", sum(p.numel() for p in actor.parameters()), "count")
            fwd, step = _torch_calls(actor, size, b)
            torch_calls[f"forward_{family}_{size}px_b{b}"] = fwd
            torch_calls[f"train_step_{family}_{size}px_b{b}"] = step
            onnx_calls[family] = _onnx_call(actor, size, opt["ort_threads"])
        for name, samples in _interleaved(torch_calls, rounds).items():
            report.add(name, float(np.median(samples)) * 1e3, "ms")
        for family, samples in _interleaved(onnx_calls, onnx_rounds, warmup=10).items():
            p50, p99 = percentiles_ms(samples)
            report.add(f"onnx_p50_{family}_{size}px_b1", p50, "ms")
            report.add(f"onnx_p99_{family}_{size}px_b1", p99, "ms")
        _ratios(report, size, b)
    report.notes.append(f"group {opt['group']}, default NetworkConfig, batch {b}, torch on {opt['threads']} "
                        f"threads, onnxruntime on {opt['ort_threads']} intra-op thread(s) with the robot PC's session "
                        "options (runtime.package), CPU, families timed round-robin; took "
                        f"{time.perf_counter() - t0:.0f} s")
    return report


def _ratios(report: BenchReport, size: int, batch: int) -> None:
    f = report.figures
    exact_step = f[f"train_step_exact_{size}px_b{batch}"]
    for family in ("relaxed", "relaxed_steerable", "cnn"):
        report.add(f"train_step_ratio_{family}_vs_exact_{size}px", f[f"train_step_{family}_{size}px_b{batch}"]
                   / exact_step, "x")
        report.add(f"onnx_p50_ratio_{family}_vs_exact_{size}px", f[f"onnx_p50_{family}_{size}px_b1"]
                   / f[f"onnx_p50_exact_{size}px_b1"], "x")
    report.target(f"train_step_ratio_relaxed_vs_exact_{size}px", "<=", 1.3)
    report.target(f"onnx_p50_ratio_relaxed_vs_exact_{size}px", "<=", 1.1)
    if size == 64:
        report.target("onnx_p99_relaxed_64px_b1", "<=", 2.0)
        report.target("onnx_p99_exact_64px_b1", "<=", 2.0)
