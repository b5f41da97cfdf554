"""Lock facts measured, not recited: who blocks whom (pg_blocking_pids) and which locks a session holds (pg_locks).

Taught in notebook 04 (who blocks whom) and notebook 05 (the lock ledger); both show the queries in a cell first.
`lock_waits` counts the waits of a workload while it runs (notebook 04 §3).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import db
from .errors import WorkbookError

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

# pg_stat_activity and pg_locks show every session of the server. On a shared one other learners run the same
# notebooks, so each query keeps to sessions in this database and of this role (a pid of a session that has
# ended may be another's by now). pg_locks rows of transactionid and virtualxid locks have no database: they are
# scoped through the holding session's pg_stat_activity row.
OWN = "a.datname = current_database() AND a.usename = current_user"
BLOCKERS_SQL = f"SELECT a.pid, pg_blocking_pids(a.pid) FROM pg_stat_activity a WHERE a.pid = ANY(%s) AND {OWN}"
LOCKS_SQL = f"""
    SELECT l.locktype, coalesce(c.relname, l.relation::text) AS relation, l.mode, l.granted
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN pg_class c ON c.oid = l.relation
    WHERE l.pid = %s AND {OWN} AND l.locktype <> 'virtualxid' AND NOT (l.locktype = 'relation' AND c.relname LIKE 'pg_%%')
    ORDER BY l.granted DESC, l.locktype, relation, l.mode"""


def blockers(conn: psycopg.Connection, pids: list[int]) -> dict[int, list[int]]:
    """For each of `pids` that is waiting for a lock, the pids it waits for (sessions not waiting are left out)."""
    rows = conn.execute(BLOCKERS_SQL, [pids]).fetchall()
    return {pid: sorted(blocking) for pid, blocking in rows if blocking}


def wait_until_blocked(conn: psycopg.Connection, pid: int, timeout: float = 5.0) -> list[int]:
    """Poll until session `pid` waits for a lock; the pids blocking it. Raises after `timeout` s (never hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiting_for := blockers(conn, [pid]).get(pid):
            return waiting_for
        time.sleep(0.01)
    raise WorkbookError(f"session {pid} did not start waiting for a lock within {timeout} s")


def locks_held(conn: psycopg.Connection, pid: int) -> pd.DataFrame:
    """The locks session `pid` holds or waits for, as rows (locktype, relation, mode, granted); catalogs left out."""
    import pandas as pd

    return pd.DataFrame(conn.execute(LOCKS_SQL, [pid]).fetchall(), columns=["locktype", "relation", "mode", "granted"])


WAITS_SQL = f"""
    SELECT DISTINCT l.pid, l.waitstart FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.application_name = %s AND {OWN}"""


@contextmanager
def lock_waits(url: str, application_name: str, every: float = 0.005) -> Iterator[dict[str, int]]:
    """Count the lock waits of the sessions named `application_name` (in this database, of this role) while the
    block runs (sampled: a lower bound).

    A wait is one ungranted lock of one session, told apart by when it started waiting (`pg_locks.waitstart`).
    """
    counted, seen = {"waits": 0}, set()
    stop = threading.Event()

    def sample() -> None:
        with db.connect(url, application_name=f"{application_name} (lock monitor)") as conn:
            while not stop.is_set():
                seen.update(conn.execute(WAITS_SQL, [application_name]).fetchall())
                counted["waits"] = len(seen)
                stop.wait(every)

    monitor = threading.Thread(target=sample, daemon=True)
    monitor.start()
    try:
        yield counted
    finally:
        stop.set()
        monitor.join(5)
