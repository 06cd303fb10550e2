"""What a latency-bound process (the control loop, the policy server) does once before its first period."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any


def freeze_gc_in_main_thread() -> bool:
    """Move every object built so far (the sim, torch, onnxruntime, the model) out of the cyclic GC's reach.

    A full collection walks every tracked object: tens of ms with a sim in the process, landing on a period or a
    request now and then. The loop and the server make little garbage of their own. Only the main thread does
    this: a loop or server on a side thread leaves its host process's GC alone. Returns whether it froze.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    gc.collect()
    gc.freeze()
    return True


@contextlib.contextmanager
def fifo_priority(priority: int, log: Callable[[str], None] = print) -> Iterator[bool]:
    """Run the calling thread under SCHED_FIFO at ``priority`` (1-99) inside the block, then restore its policy.

    A fixed-priority thread preempts every normal process at once, so a compiler or a training job on the
    same cores cannot delay a period. It needs root, CAP_SYS_NICE or an rtprio limit (``ulimit -r``);
    without them the loop runs at normal priority and says so. 0 leaves the scheduling alone. Yields
    whether the priority was raised. The loop sleeps most of each period, and the kernel keeps 5% of every
    second for normal tasks (``sched_rt_runtime_us``), so a bug cannot lock the machine up.
    """
    if priority <= 0 or not hasattr(os, "SCHED_FIFO"):
        yield False
        return
    if priority > 99:
        raise ValueError(f"rt_priority must be in 0..99, got {priority}")
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        log(f"rt_priority {priority}: not permitted (needs root, CAP_SYS_NICE or `ulimit -r`); running at normal "
            "priority")
        yield False
        return
    try:
        yield True
    finally:
        os.sched_setscheduler(0, before[0], before[1])


def rt_permitted(priority: int) -> bool:
    """Whether this thread may run under SCHED_FIFO at ``priority`` (tried and undone at once, silently)."""
    with fifo_priority(priority, log=lambda msg: None) as permitted:
        return permitted


def zmq_context(priority: int) -> Any:
    """A pyzmq context whose I/O threads run under SCHED_FIFO at ``priority`` when this process may do that,
    else the shared default context.

    Every message of a round trip passes through an I/O thread on each side; at normal priority those wait
    behind any busy process, which undoes a FIFO loop or server. The policy is set only after a probe of the
    permission: libzmq aborts the process if it cannot apply the priority to a new thread.
    """
    import zmq

    if not rt_permitted(priority):  # also 0: normal scheduling
        return zmq.Context.instance()
    context = zmq.Context()
    context.set(zmq.THREAD_SCHED_POLICY, os.SCHED_FIFO)
    context.set(zmq.THREAD_PRIORITY, priority)
    return context
