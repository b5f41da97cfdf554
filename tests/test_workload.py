"""run_together releases workers at once, records outcomes and phases, and never waits longer than its timeout;
steady_load and pool_sweep time each request's wait for a connection and its query."""

from __future__ import annotations

import threading
import time

import pytest

from workbook_utils import db, urls
from workbook_utils.errors import WorkbookError
from workbook_utils.workload import pool_sweep, run_together, steady_load


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


def _sleep(seconds):
    from sqlalchemy import text

    return lambda conn: conn.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})


def test_steady_load_times_the_wait_and_the_query_of_every_request():
    engine = db.make_engine(urls.database_url("tiny"), pool_size=1, max_overflow=0, pool_timeout=5)
    try:
        requests = steady_load(engine, _sleep(0.02), clients=3, seconds=0.5)
    finally:
        engine.dispose()
    assert list(requests.columns) == ["wait ms", "query ms", "error", "finished", "latency ms"]
    assert (requests["error"] == "").all() and len(requests) >= 3   # a slow machine finishes fewer, never none
    assert (requests["query ms"] >= 20).all()                 # pg_sleep(0.02) on the server
    # Three clients, one connection: two of them are always queued, so waits add up to about twice the query time.
    # The mean, not the median: the pool is not fair (a client that gives the connection back often takes it again
    # before a waiter wakes), so a slow machine shows a few long waits and many short ones.
    assert requests["wait ms"].mean() >= 20
    assert (requests["latency ms"] == requests["wait ms"] + requests["query ms"]).all()


def test_steady_load_records_a_failure_and_stops_that_client():
    def fails(conn):
        raise RuntimeError("boom")

    engine = db.make_engine(urls.database_url("tiny"), pool_size=1)
    try:
        requests = steady_load(engine, fails, clients=2, seconds=0.3)
    finally:
        engine.dispose()
    assert requests["error"].tolist() == ["RuntimeError", "RuntimeError"]


def test_pool_sweep_one_row_per_size_and_waiting_work_scales_with_the_pool():
    """Sleeping queries use no server CPU: doubling the pool doubles the throughput (the CPU-bound case does not)."""
    url = urls.database_url("tiny")

    def make(size):
        return db.make_engine(url, pool_size=size, max_overflow=0, pool_timeout=5,
                              connect_args={"application_name": "test-pool-sweep"})

    sweep = pool_sweep(make, [1, 4], _sleep(0.02), clients=4, seconds=0.3, rounds=2)
    assert list(sweep.index) == [1, 4] and sweep.index.name == "pool_size"
    assert list(sweep.columns) == ["queries/s", "p50 ms", "p95 ms", "p99 ms", "mean wait ms", "mean query ms", "failed"]
    assert (sweep["failed"] == 0).all()
    assert sweep.loc[4, "queries/s"] > 2.5 * sweep.loc[1, "queries/s"]
    assert sweep.loc[1, "mean wait ms"] > sweep.loc[4, "mean wait ms"]
    with db.connect(url) as conn:   # each pool was disposed after its run
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test-pool-sweep'"
                            ).fetchone()[0] == 0


def test_cpu_of_others_sees_another_program_and_not_the_server():
    import subprocess
    import sys

    from sqlalchemy import text

    from workbook_utils.workload import cpu_of_others, postmaster_pid

    engine = db.make_engine(urls.database_url("tiny"))
    try:
        server = postmaster_pid(engine)
        assert server is not None   # the embedded server runs on this machine
        with cpu_of_others(server) as spinning:   # another program keeps one core busy for 1 s
            subprocess.run([sys.executable, "-c", "import time\nend = time.time() + 1\nwhile time.time() < end: pass"],
                           check=True, timeout=30)
        with cpu_of_others(None) as unknown:
            pass
        with engine.connect() as conn, cpu_of_others(server) as server_work:
            conn.execute(text("SELECT count(*) FROM generate_series(1, 2000000)")).scalar()
    finally:
        engine.dispose()
    assert spinning.cores >= 0.1 and unknown.cores is None   # a share of a core: how much depends on the machine
    assert server_work.cores is not None and server_work.cores >= 0   # the server's own work is not "others"
