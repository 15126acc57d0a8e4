"""Which lagging partitions the worker reads again (``pipeline.runtime.app.Stalls``).

After a rebalance Faust can fetch a newly assigned partition's first records and never
deliver them; the worker's lag timer then seeks the partition back to its committed
offset. The crash test exercises that on the real broker in about half its runs; these
pin down when it happens and when it must not."""

from __future__ import annotations

from pipeline.runtime.app import Stalls


def test_a_partition_stuck_behind_its_log_end_is_read_again_after_the_window() -> None:
    stalls = Stalls(15.0)
    assert stalls.due("p", end=1, committed=0, idle=True, now=100.0) is None  # first seen
    assert stalls.due("p", end=1, committed=0, idle=True, now=110.0) is None
    assert stalls.due("p", end=1, committed=0, idle=True, now=116.0) == 16.0
    # Read again: it gets another window before the next time.
    assert stalls.due("p", end=1, committed=0, idle=True, now=120.0) is None
    assert stalls.due("p", end=1, committed=0, idle=True, now=131.0) == 15.0


def test_progress_work_in_progress_or_no_lag_is_never_a_stall() -> None:
    stalls = Stalls(15.0)
    stalls.due("moving", end=50, committed=10, idle=True, now=0.0)
    assert stalls.due("moving", end=60, committed=20, idle=True, now=20.0) is None
    assert stalls.due("moving", end=60, committed=30, idle=True, now=40.0) is None
    stalls.due("busy", end=5, committed=0, idle=True, now=0.0)
    assert stalls.due("busy", end=5, committed=0, idle=False, now=20.0) is None
    # Busy restarts the clock: idle again, it needs a whole window.
    assert stalls.due("busy", end=5, committed=0, idle=True, now=21.0) is None
    assert stalls.due("busy", end=5, committed=0, idle=True, now=30.0) is None
    stalls.due("done", end=5, committed=5, idle=True, now=0.0)
    assert stalls.due("done", end=5, committed=5, idle=True, now=100.0) is None
