"""A runaway query and the request that arrives behind it on a pool of one (notebook 01 §7, `statement_timeout`).

The threads, the bounded waits and the cleanup live here, so the notebook's cell shows only the two engines it
compares. Whatever happens, the runaway query is cancelled at the end from a connection of its own: nothing is left
running on the server.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from . import db
from .workload import Lane, Run, run_together

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

RUNAWAY = "SELECT pg_sleep(30)"
CANCEL = ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s) AND query = %s AND state = 'active' "
          "AND datname = current_database() AND usename = current_user")


def runaway_and_request(engine: Engine, url: str, arrive_after: float = 0.3) -> Run:
    """Worker 0 runs a 30 s query through `engine`; worker 1 arrives `arrive_after` s after it started, for `SELECT 1`.

    Lanes: "arriving", "runaway query", "waiting for a connection", "quick query". Worker 0's result is the
    cancelled query's "SQLSTATE: message"; worker 1's is 1, or its outcome the pool's TimeoutError.
    """
    from sqlalchemy import exc, text

    runaway_pid: list[int] = []
    started = threading.Event()

    def runaway(lane: Lane) -> str | None:
        with engine.connect() as conn:
            lane.phase("runaway query")
            runaway_pid.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
            started.set()
            try:
                conn.execute(text(RUNAWAY))
            except exc.OperationalError as error:  # cancelled: the server's SQLSTATE and message
                return f"{error.orig.sqlstate}: {error.orig.diag.message_primary}"
        return None

    def request(lane: Lane) -> Any:
        if not started.wait(10):
            raise TimeoutError("the runaway query did not start within 10 s")
        time.sleep(arrive_after)
        lane.phase("waiting for a connection")
        with engine.connect() as conn:
            lane.phase("quick query")
            return conn.execute(text("SELECT 1")).scalar()

    def work(lane: Lane) -> Any:
        if lane.worker == 0:
            return runaway(lane)
        try:
            return request(lane)
        finally:  # whatever happened to the request, the runaway goes (it would run for 30 s)
            with db.connect(url) as other:
                other.execute(CANCEL, [runaway_pid, RUNAWAY])

    return run_together(work, 2, first_phase="arriving", timeout=60)
