"""robot-stack bench serve: policy-server round trips against bare onnxruntime, and a 30 Hz control loop.

Figures: for 64 and 128 px heightmaps, p50/p99 of (a) ``session.run`` on the same package in this process
(the baseline) and (b) ``PolicyClient.act`` to a ``robot-stack serve`` subprocess over loopback TCP;
the overhead is (b) - (a) at each percentile. (c) A bare pyzmq echo of the same request bytes shows the floor
the transport sets on this machine. The three series take turns in blocks, so a change in the host's load
between them cannot pass for overhead; the spread of the per-block overhead p99 shows that noise.
Then the sim arm (robosuite reach, ray-cast camera) runs at 30 Hz through the server for 10 minutes
(``--quick``: 30 s), counting missed deadlines. Options:
``png=FILE`` (latency histogram, default runs/bench/serve_latency.png), ``task=reach``, ``seconds=N``,
``repeats=N`` (round trips per series and size; default 5000, ``--quick`` 500),
``rt_priority=N`` (default 50: loop and server under SCHED_FIFO, as docs/deploy.md advises for a robot PC;
0 or no permission: normal scheduling; the report says which).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zmq

from robot_stack.benchmarks import BenchReport, percentiles_ms, time_calls
from robot_stack.runtime import wire

OPTIONS = ("png", "task", "seconds", "repeats", "rt_priority")


def _options(options: list[str]) -> dict[str, str]:
    out = {}
    for item in options:
        if "=" not in item:
            raise ValueError(f"bench serve options look like key=value (png=..., task=..., seconds=...), got {item!r}")
        key, value = item.split("=", 1)
        if key not in OPTIONS:
            raise ValueError(f"unknown bench serve option {key!r}; valid: {', '.join(OPTIONS)}")
        out[key] = value
    return out


BLOCKS = 10  # the three series take turns in this many blocks, so a drift in the host's load hits them alike


def _round_trips(report: BenchReport, size: int, repeats: int, workdir: Path) -> dict[str, np.ndarray]:
    from robot_stack.jobs.serving import spawn_server
    from robot_stack.runtime import PolicyClient, load_policy_package
    from robot_stack.runtime.synthetic import default_spec, make_package

    spec = default_spec(size)
    path = make_package(workdir / f"policy_{size}.onnx", spec, kind="conv")
    policy = load_policy_package(path, spec)
    rng = np.random.default_rng(size)
    obs = {"heightmap": rng.random((1, size, size), dtype=np.float32) * 0.1,
           "gripper": np.array([0.0, 0.5], np.float32)}
    feeds = policy.stack([obs])
    frame = wire.encode({"v": wire.PROTOCOL_VERSION, "type": "act", "id": 1, "token": "bench", "obs": obs})
    os.environ.setdefault("ROBOT_STACK_BENCH_TOKEN", "bench")
    proc, endpoint = spawn_server(str(path), "ROBOT_STACK_BENCH_TOKEN")
    try:
        with PolicyClient(endpoint, token="bench", timeout=2.0) as client, _zmq_echo(frame) as echo:
            calls = {"onnxruntime": lambda: policy.session.run(["action"], feeds),
                     "server_roundtrip": lambda: client.act(obs), "zmq_echo": echo}
            blocks = _interleaved(calls, repeats)
    finally:
        proc.stop()
    series = {name: np.concatenate(parts) for name, parts in blocks.items()}
    for name, samples in series.items():
        p50, p99 = percentiles_ms(samples)
        report.add(f"{name}_{size}px_p50", p50, "ms")
        report.add(f"{name}_{size}px_p99", p99, "ms")
    b50, b99 = percentiles_ms(series["onnxruntime"])
    s50, s99 = percentiles_ms(series["server_roundtrip"])
    report.add(f"overhead_{size}px_p50", s50 - b50, "ms")
    report.add(f"overhead_{size}px_p99", s99 - b99, "ms")
    per_block = [percentiles_ms(s)[1] - percentiles_ms(b)[1]
                 for s, b in zip(blocks["server_roundtrip"], blocks["onnxruntime"], strict=True)]
    report.add(f"overhead_{size}px_p99_per_block_min", min(per_block), "ms")
    report.add(f"overhead_{size}px_p99_per_block_max", max(per_block), "ms")
    report.add(f"roundtrip_vs_onnxruntime_{size}px_p50_ratio", s50 / b50, "x")
    report.target(f"overhead_{size}px_p99", "<=", 0.5)
    return {f"onnxruntime {size}px": series["onnxruntime"], f"server round trip {size}px": series["server_roundtrip"],
            f"pyzmq echo {size}px": series["zmq_echo"]}


def _interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[np.ndarray]]:
    """``repeats`` timed calls of each function, taken in ``BLOCKS`` turns: block i of every series, then i + 1."""
    per_block = max(1, repeats // BLOCKS)
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    for _ in range(BLOCKS):
        for name, fn in calls.items():
            blocks[name].append(time_calls(fn, per_block, warmup=20))
    return blocks


def _echo_server(ready) -> None:
    """A ROUTER that sends every message straight back: the transport alone, no decoding, no policy."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:*")
    ready.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        sock.send_multipart(sock.recv_multipart())


@contextmanager
def _zmq_echo(frame: bytes) -> Iterator[Callable[[], None]]:
    """A round trip of the act request's bytes through a bare pyzmq echo process: the floor that the library and
    this machine's loopback set under any server built on pyzmq."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_echo_server, args=(ready,), daemon=True)
    proc.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(ready.get(timeout=30))

        def roundtrip() -> None:
            sock.send(frame)
            sock.recv()

        yield roundtrip
    finally:
        sock.close()
        proc.kill()
        proc.join(5)


def _loop(report: BenchReport, seconds: float, task: str, workdir: Path, rt_priority: int) -> None:
    from hardware.sim_arm import SimArm, projector_for
    from robot_stack.jobs.run import robot_spec_for, spawn_server
    from robot_stack.runtime import ControlLoop, LoopConfig, PolicyClient, SafetyConfig, SafetyFilter
    from robot_stack.runtime.realtime import rt_permitted, zmq_context
    from robot_stack.runtime.synthetic import make_package
    from robot_stack.specs import PolicySpec

    arm = SimArm.from_task(task, seed=0) if task == "toy_reach" else SimArm.from_task(task, seed=0, horizon=10**6)
    spec = PolicySpec(*arm.env.policy_spec_parts, group="C8", family="synthetic")
    path = make_package(workdir / "loop_policy.onnx", spec, kind="conv")
    rt_priority = rt_priority if rt_permitted(rt_priority) else 0
    proc, endpoint = spawn_server(str(path), "ROBOT_STACK_BENCH_TOKEN", rt_priority=rt_priority)
    rate = 30.0
    try:
        client = PolicyClient(endpoint, token="bench", expected=robot_spec_for(arm.env.policy_spec_parts, spec),
                              context=zmq_context(rt_priority))
        camera = arm.camera()
        cfg = LoopConfig(rate_hz=rate, max_steps=int(seconds * rate), silent_periods=3, rt_priority=rt_priority)
        loop = ControlLoop(arm, camera, projector_for(camera, spec.heightmap), client,
                           SafetyFilter(SafetyConfig(workspace=spec.heightmap.workspace), spec.action), spec, cfg,
                           log=lambda msg: None)
        t0 = time.monotonic()
        (result,) = loop.run(episodes=1)
        wall = time.monotonic() - t0
        client.close()
    finally:
        proc.stop()
        arm.close()
    report.add("loop_rate", rate, "Hz")
    report.add("loop_rt_priority (0: normal scheduling)", rt_priority)
    report.add("loop_periods", result.steps)
    report.add("loop_wall_s", wall, "s")
    report.add("loop_missed_deadlines", result.missed_deadlines + result.overruns)
    report.add("loop_work_p50", result.work.percentile(50) or float("nan"), "ms")
    report.add("loop_work_p99", result.work.percentile(99) or float("nan"), "ms")
    report.add("loop_work_max", result.work.to_dict()["max_ms"] or float("nan"), "ms")
    report.add("loop_period_budget", 1e3 / rate, "ms")
    report.target("loop_missed_deadlines", "<=", 0)
    report.notes.append(f"loop: {task} sim arm, {result.steps} periods at {rate:g} Hz, ended by {result.reason}; "
                        f"work = camera + projection + round trip + safety + sim step per period")


def _histogram(samples: dict[str, np.ndarray], path: str) -> None:
    from robot_stack.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4.5))
    all_ms = np.concatenate([s * 1e3 for s in samples.values()])
    bins = np.logspace(np.log10(max(all_ms.min(), 1e-3)), np.log10(all_ms.max()), 60)
    for name, s in samples.items():
        ax.hist(s * 1e3, bins=bins, histtype="step", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("calls")
    ax.set_title("policy server round trip vs bare onnxruntime (loopback)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool, options: list[str]) -> BenchReport:
    opts = _options(options)
    report = BenchReport("serve")
    repeats = int(opts.get("repeats", 500 if quick else 5000))
    seconds = float(opts.get("seconds", 30 if quick else 600))
    with tempfile.TemporaryDirectory() as tmp:
        samples = {}
        for size in (64, 128):
            samples.update(_round_trips(report, size, repeats, Path(tmp)))
        _loop(report, seconds, opts.get("task", "reach"), Path(tmp), int(opts.get("rt_priority", 50)))
    png = opts.get("png", "runs/bench/serve_latency.png")
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    _histogram(samples, png)
    report.notes.append(f"latency histogram: {png}; {repeats} calls per size; policy: a synthetic 2-conv ONNX "
                        "actor (robot_stack.runtime.synthetic), server in a subprocess, client in this process")
    return report
