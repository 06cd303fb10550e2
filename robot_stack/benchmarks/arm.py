"""robot-stack bench arm: the UR driver's streaming thread's period jitter at 500 Hz, against the controller double.

The driver (hardware/ur.py) runs with its streaming thread against hardware/ur_double.py on the real clock,
an e-series double (500 Hz), while this thread plays a 10 Hz control loop (``apply`` of random small steps).
The loop runs at launch/real_ur.yaml's ``loop.rt_priority``, as ``robot-stack run`` would: a loop preempted while it
holds the interpreter lock would hold up the stream too. Jitter is |period - 2 ms| between consecutive ticks.
Baselines in the same run: the same stream and loop without real-time priority (what they get where the OS
refuses it), and a bare thread that only sleeps to the same 500 Hz
deadlines (``time.sleep``), so the machine's own wake-up jitter is on the same table.
Target (issue 23): jitter p99 within 20% of the period. Options: ``seconds=N`` (quick 10, full 60).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_stack.benchmarks import BenchReport, positive_option

RATE_HZ = 500.0
TARGET_FRACTION = 0.2


def _loop_priority() -> int:
    """The control loop's SCHED_FIFO priority in the UR launch file: the bench's loop runs as that loop would."""
    from robot_stack import config

    return int(config.read_yaml(config.LAUNCH_DIR / "real_ur.yaml")["loop"]["rt_priority"])


def _driver_periods(seconds: float, rt_priority: int | None = None) -> tuple[np.ndarray, str]:
    """Tick periods of the stream and its scheduling; ``rt_priority`` None keeps the driver's default."""
    from hardware.ur import URArm, URConfig
    from hardware.ur_double import RealClock, URControllerDouble
    from robot_stack.devices import ArmCommand
    from robot_stack.runtime.realtime import fifo_priority, freeze_gc_in_main_thread

    ctl = URControllerDouble([0.5, 0.0, 0.15, 3.14159265, 0.0, 0.0], clock=RealClock(), move_settle=0.02)
    priority = {} if rt_priority is None else {"rt_priority": rt_priority}
    cfg = URConfig(host="double", tcp_offset=[0.0] * 6, payload_mass=0.0, speed=1.0, gripper_output=-1, **priority)
    arm = URArm(cfg, rtde=ctl.modules(), log=lambda line: None)
    rng = np.random.default_rng(0)
    freeze_gc_in_main_thread()  # as the control loop does before its first period
    try:
        arm.reset()
        arm.stream.tick_times.clear()
        end = time.monotonic() + seconds
        with fifo_priority(_loop_priority() if rt_priority is None else 0, log=lambda line: None):
            while time.monotonic() < end:
                arm.state()
                arm.apply(ArmCommand(dpos=rng.uniform(-0.005, 0.005, 3)))
                time.sleep(0.1)
        return arm.stream.periods(), arm.stream.scheduling
    finally:
        arm.close()


def _bare_periods(seconds: float) -> np.ndarray:
    ticks: list[float] = []

    def run() -> None:
        deadline = time.monotonic()
        end = deadline + seconds
        while deadline < end:
            ticks.append(time.perf_counter())
            deadline += 1.0 / RATE_HZ
            rest = deadline - time.monotonic()
            if rest > 0:
                time.sleep(rest)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return np.diff(np.asarray(ticks))


def _add_jitter(report: BenchReport, tag: str, periods: np.ndarray) -> None:
    jitter_ms = np.abs(periods - 1.0 / RATE_HZ) * 1e3
    report.add(f"{tag} period p50", float(np.median(periods)) * 1e3, "ms")
    report.add(f"{tag} jitter p50", float(np.percentile(jitter_ms, 50)), "ms")
    report.add(f"{tag} jitter p99", float(np.percentile(jitter_ms, 99)), "ms")
    report.add(f"{tag} jitter max", float(jitter_ms.max()), "ms")
    report.add(f"{tag} periods late by > 20%", float(np.mean(jitter_ms > TARGET_FRACTION * 1e3 / RATE_HZ)), "")


def run(quick: bool, options: list[str]) -> BenchReport:
    seconds = positive_option(options, "arm", "seconds", 10.0 if quick else 60.0)
    report = BenchReport("arm")
    driver, scheduling = _driver_periods(seconds)
    normal, _ = _driver_periods(seconds, 0)
    bare = _bare_periods(seconds)
    report.notes.append(f"UR driver streaming thread at {RATE_HZ:g} Hz against the controller double (real clock), "
                        f"with a 10 Hz loop calling apply, {seconds:g} s each; 'stream' has the default config "
                        f"({scheduling}) and its loop launch/real_ur.yaml's loop.rt_priority {_loop_priority()}; "
                        "baselines in the same run: the same stream at normal priority, and a "
                        "bare thread sleeping to the same deadlines")
    _add_jitter(report, "stream", driver)
    _add_jitter(report, "stream and loop, normal priority", normal)
    _add_jitter(report, "bare sleep", bare)
    report.add("stream periods", float(len(driver)))
    report.target("stream jitter p99", "<=", TARGET_FRACTION * 1e3 / RATE_HZ)
    return report
