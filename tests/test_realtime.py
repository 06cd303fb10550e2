"""The control loop's real-time helpers: SCHED_FIFO for the loop thread, restored afterwards."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from robot_stack.runtime import LoopConfig
from robot_stack.runtime.realtime import fifo_priority, freeze_gc_in_main_thread


def test_fifo_priority_is_raised_inside_the_block_and_restored_after() -> None:
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    messages: list[str] = []
    with fifo_priority(10, messages.append) as raised:
        inside = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    if raised:  # root or CAP_SYS_NICE
        assert inside == (os.SCHED_FIFO, 10) and not messages
    else:  # no permission: normal scheduling, and the operator is told why
        assert inside == before and "not permitted" in messages[0]


def test_fifo_priority_zero_leaves_scheduling_alone_and_bad_values_are_refused() -> None:
    before = os.sched_getscheduler(0)
    with fifo_priority(0) as raised:
        assert not raised and os.sched_getscheduler(0) == before
    with pytest.raises(ValueError, match="rt_priority"), fifo_priority(100):
        pass
    with pytest.raises(ValueError, match="rt_priority"):
        LoopConfig(rt_priority=-1)


def test_fifo_priority_is_restored_when_the_loop_raises() -> None:
    before = os.sched_getscheduler(0)
    with pytest.raises(RuntimeError), fifo_priority(5, lambda msg: None):
        raise RuntimeError("the loop failed")
    assert os.sched_getscheduler(0) == before


def test_gc_is_frozen_only_from_the_main_thread() -> None:
    results = []
    worker = threading.Thread(target=lambda: results.append(freeze_gc_in_main_thread()))
    worker.start()
    worker.join()
    assert results == [False]
    try:
        assert freeze_gc_in_main_thread() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_server_with_rt_priority_answers_and_its_thread_ends_cleanly(tmp_path) -> None:
    import numpy as np

    from robot_stack.runtime import PolicyClient, ServeConfig, load_policy_package, serve_in_thread
    from robot_stack.runtime.synthetic import default_spec, make_package

    spec = default_spec(16)
    policy = load_policy_package(make_package(tmp_path / "p.onnx", spec, kind="conv"), spec)
    server, thread, stop = serve_in_thread(policy, ServeConfig(bind="tcp://127.0.0.1:*", rt_priority=5))
    try:
        with PolicyClient(server.endpoint, timeout=5.0) as client:
            obs = {"heightmap": np.full((1, 16, 16), 0.02, np.float32), "gripper": np.array([0.0, 0.5], np.float32)}
            np.testing.assert_allclose(client.act(obs), policy.act(obs), atol=1e-6)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_zmq_context_io_threads_get_the_priority_when_permitted() -> None:
    import zmq

    from robot_stack.runtime.realtime import zmq_context

    assert zmq_context(0) is zmq.Context.instance()
    with fifo_priority(7, lambda msg: None) as permitted:
        pass
    context = zmq_context(7)
    if not permitted:  # no rights: the shared context, normal priority, and no abort inside libzmq
        assert context is zmq.Context.instance()
        return
    sock = context.socket(zmq.DEALER)  # the I/O thread starts with the first socket
    try:
        # The new thread names itself and applies the policy once it runs: wait for it (a loaded CI machine)
        deadline = time.monotonic() + 10.0
        while (os.SCHED_FIFO, 7) not in _thread_policies().get("ZMQbg/IO/0", []) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (os.SCHED_FIFO, 7) in _thread_policies()["ZMQbg/IO/0"]
    finally:
        sock.close(linger=0)
        context.term()


def _thread_policies() -> dict[str, list[tuple[int, int]]]:
    """Thread name -> [(scheduling policy, priority)] for this process's threads (Linux /proc)."""
    policies: dict[str, list[tuple[int, int]]] = {}
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/comm") as fh:
                name = fh.read().strip()
            policy = (os.sched_getscheduler(int(task)), os.sched_getparam(int(task)).sched_priority)
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        policies.setdefault(name, []).append(policy)
    return policies
