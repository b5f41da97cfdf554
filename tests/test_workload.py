"""run_together releases workers at once, records outcomes and phases, and never waits longer than its timeout."""

from __future__ import annotations

import threading
import time

import pytest

from workbook_utils.errors import WorkbookError
from workbook_utils.workload import run_together


def test_workers_start_together_and_outcomes_are_recorded():
    arrived, lock = [], threading.Lock()

    def work(lane):
        with lock:
            arrived.append(time.perf_counter())
        lane.phase("working")
        if lane.worker == 2:
            raise ValueError("worker 2 fails\nsecond line")
        if lane.worker == 1:
            raise TimeoutError  # no message at all
        return lane.worker * 10

    run = run_together(work, 4, first_phase="starting")
    assert max(arrived) - min(arrived) < 0.5                      # released by one barrier
    assert run.outcomes["outcome"].tolist() == ["ok", "TimeoutError", "ValueError", "ok"]
    assert run.outcomes.loc[2, "error"] == "worker 2 fails"
    assert run.outcomes.loc[3, "result"] == 30
    assert run.count("ok") == 2 and run.count("ValueError") == 1 and run.outcomes.loc[1, "error"] == ""
    assert set(run.phases["phase"]) == {"starting", "working"}
    assert (run.phases["end"] >= run.phases["start"]).all()
    assert len(run.phases) == 8                                   # two phases per worker


def test_a_worker_that_hangs_is_reported_not_waited_for():
    release = threading.Event()
    start = time.perf_counter()
    with pytest.raises(WorkbookError, match="1 of 2 workers were still running"):
        run_together(lambda lane: release.wait(10) if lane.worker == 1 else None, 2, timeout=0.5)
    assert time.perf_counter() - start < 5
    release.set()
