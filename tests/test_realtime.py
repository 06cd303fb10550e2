"""The control loop's real-time helpers: SCHED_FIFO for the loop thread, restored afterwards."""

from __future__ import annotations

import gc
import os
import threading

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
