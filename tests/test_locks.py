"""Who blocks whom and which locks a session holds, read from the real server."""

from __future__ import annotations

import threading
import time

import pytest

from workbook_utils import db, locks
from workbook_utils.errors import WorkbookError

from .elsewhere import another_role, waiting


def test_a_blocked_session_names_its_blocker_and_the_locks_are_read(seeded):
    with (db.connect(seeded, autocommit=False) as holder, db.connect(seeded, autocommit=False) as waiter,
          db.connect(seeded) as observer):
        holder.execute("UPDATE products SET inventory = inventory WHERE id = 1")
        waiter.execute("SET LOCAL lock_timeout = '5s'")
        update = threading.Thread(target=lambda: waiter.execute("UPDATE products SET inventory = 0 WHERE id = 1"))
        update.start()
        try:
            assert locks.wait_until_blocked(observer, waiter.info.backend_pid) == [holder.info.backend_pid]
            held = locks.locks_held(observer, holder.info.backend_pid)
            assert {"relation": "products", "mode": "RowExclusiveLock", "granted": True}.items() <= \
                held[held.relation == "products"].iloc[0].to_dict().items()
            assert locks.blockers(observer, [holder.info.backend_pid]) == {}  # the holder waits for no one
        finally:
            holder.rollback()
            update.join(10)
        assert not update.is_alive()
        assert waiter.execute("SELECT inventory FROM products WHERE id = 1").fetchone() == (0,)  # it went through
        waiter.rollback()  # the dataset stays as seeded


def test_waiting_for_a_session_that_never_blocks_gives_up(seeded):
    with db.connect(seeded) as conn, pytest.raises(WorkbookError, match="did not start waiting"):
        locks.wait_until_blocked(conn, conn.info.backend_pid, timeout=0.2)


def test_lock_waits_counts_each_wait_of_the_named_sessions(seeded):
    with (db.connect(seeded, autocommit=False) as holder,
          db.connect(seeded, autocommit=False, application_name="lock-waits-test") as waiter,
          db.connect(seeded) as observer):
        with locks.lock_waits(seeded, "lock-waits-test") as counted:
            for _ in range(2):
                holder.execute("UPDATE products SET inventory = inventory WHERE id = 1")
                waiter.execute("SET LOCAL lock_timeout = '5s'")
                update = threading.Thread(target=lambda: waiter.execute("UPDATE products SET inventory = 0 WHERE id = 1"))
                update.start()
                locks.wait_until_blocked(observer, waiter.info.backend_pid)
                deadline = time.monotonic() + 5
                while counted["waits"] < _ + 1 and time.monotonic() < deadline:  # the monitor has seen this wait
                    time.sleep(0.01)
                holder.rollback()
                update.join(10)
                waiter.rollback()
        assert counted["waits"] == 2


def test_sessions_of_another_database_or_role_are_neither_seen_waiting_nor_counted(seeded, scratch_db):
    """Another learner's session, same application_name, waiting in their database or as their role, is not ours."""
    app = "lock-scope-test"
    with another_role(seeded) as stranger, db.connect(seeded) as observer, \
            waiting(scratch_db, app, key=1) as (elsewhere, elsewhere_holder), \
            waiting(stranger, app, key=2) as (theirs, their_holder), \
            locks.lock_waits(seeded, app) as counted:
        assert locks.blockers(observer, [elsewhere, theirs]) == {}
        assert locks.locks_held(observer, elsewhere).empty and locks.locks_held(observer, theirs).empty
        with waiting(seeded, app, key=3) as (ours, our_holder):  # the control: ours is seen and counted
            assert locks.blockers(observer, [ours, elsewhere, theirs]) == {ours: [our_holder]}
            assert locks.locks_held(observer, ours)[["locktype", "granted"]].values.tolist() == [["advisory", False]]
            deadline = time.monotonic() + 5
            while counted["waits"] < 1 and time.monotonic() < deadline:  # sampled meanwhile: all three were waiting
                time.sleep(0.01)
        assert counted["waits"] == 1
