"""Sessions a scoped query must leave alone: the same application_name in another database, or of another role.

On a shared server other learners run the same notebooks, under the same application_names, in their own databases
and as their own roles. The embedded server's role has pg_monitor and pg_signal_backend, so an unscoped query there
sees (and may end) every such session: the tests below would catch it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from workbook_utils import db, urls


@contextmanager
def another_role(url: str) -> Iterator[str]:
    """`url` with a new ordinary login role as its user (the embedded server trusts it); the role is dropped after."""
    name = f"scope_{uuid.uuid4().hex[:8]}"
    with db.connect(urls.admin_url()) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield url.replace(f"{urls.APP_ROLE}@", f"{name}@", 1)
    finally:
        with db.connect(urls.admin_url()) as admin:
            admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", [name])
            admin.execute(f'DROP ROLE "{name}"')


def is_waiting(conn, pid: int) -> bool:
    """Does session `pid` wait for a lock (read unscoped, as a test may)?"""
    return conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [pid]).fetchone()[0] > 0


@contextmanager
def waiting(url: str, application_name: str, key: int = 4242) -> Iterator[tuple[int, int]]:
    """A session named `application_name` on `url` waiting for advisory lock `key` that another session of `url`
    holds (advisory locks need no table rights); (waiter's pid, holder's pid) once it waits. Both end afterwards."""
    with db.connect(url) as holder, db.connect(url, application_name=application_name) as waiter:
        holder.execute("SELECT pg_advisory_lock(%s)", [key])
        waiter.execute("SET lock_timeout = '10s'")
        done = threading.Event()

        def wait() -> None:
            try:
                waiter.execute("SELECT pg_advisory_lock(%s)", [key])
            except Exception:  # terminated by a query that should not have: the test's assertion says so
                pass
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        deadline = time.monotonic() + 5
        while not is_waiting(holder, waiter.info.backend_pid):
            assert time.monotonic() < deadline, "the waiter did not start waiting"
            time.sleep(0.01)
        try:
            yield waiter.info.backend_pid, holder.info.backend_pid
        finally:
            holder.execute("SELECT pg_advisory_unlock_all()")
            done.wait(10)


def alive(conn) -> bool:
    """Does this session still answer?"""
    try:
        return conn.execute("SELECT 1").fetchone() == (1,)
    except Exception:
        return False
