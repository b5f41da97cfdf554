"""Notebook 04's race player against the real server: the button's steps reproduce the race, the fixes fix it, and
nothing stays open."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from sqlalchemy import text

from workbook_utils import race_player

SCHEMA = "nb_player"
APP = "workbook-player-test"


@pytest.fixture(scope="module")
def engine(seeded):
    from workbook_utils import db, urls

    eng = db.make_engine(urls.database_url("tiny"), connect_args={
        "application_name": APP, "options": f"-c search_path={SCHEMA}"})
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; "
                          f"CREATE TABLE {SCHEMA}.products (id int PRIMARY KEY, inventory int NOT NULL); "
                          f"INSERT INTO {SCHEMA}.products VALUES (1, 3), (2, 3)"))
    yield eng
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    eng.dispose()


def _open_sessions(engine) -> int:
    """Sessions of this test in a transaction or holding a lock (pooled idle connections are fine)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity a WHERE application_name = :app "
                                 "AND pid <> pg_backend_pid() AND (state <> 'idle' OR EXISTS "
                                 "(SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype <> 'virtualxid'))"),
                            {"app": APP}).scalar()


def _press_until_done(box) -> int:
    """Press "Next step" as a learner would, until it is disabled; how many presses."""
    presses = 0
    while not box.next_step.disabled and presses < 20:
        box.next_step.click()
        presses += 1
    return presses


def test_with_no_fix_the_button_plays_a_lost_update(engine):
    box = race_player.widget(engine)
    assert box.player.rows == [] and box.player.conns == {}  # nothing runs before the first press
    assert _press_until_done(box) == 6
    player = box.player
    assert [r["value"] for r in player.rows] == [10, 10, 9, None, 9, None]  # s2 wrote 10 − 1 over s1's 9
    assert all(r["as expected"] for r in player.rows)
    assert player.stock() == 9
    assert _open_sessions(engine) == 0


def test_with_for_update_the_second_read_waits_and_nothing_is_lost(engine):
    box = race_player.widget(engine)
    box.fix.value = "SELECT … FOR UPDATE"
    box.next_step.click()
    box.next_step.click()  # s2's read: it waits, and the server says for whom
    player = box.player
    assert player.rows[1]["waited for"] == "s1" and player.rows[1]["outcome"] == "waiting"
    waiting = player.locks_now[~player.locks_now.granted]
    assert waiting["session"].tolist() == ["s2"], player.locks_now
    shown = player.locks_now   # the table's locks, transaction ids, tuples: no index (products_pkey …), no catalog
    assert set(shown.locktype) <= {"relation", "transactionid", "tuple"} and set(shown.relation) <= {"products", ""}, shown
    assert {"relation", "transactionid"} <= set(shown.locktype), shown
    lanes = player.lanes()
    assert [label.get_text() for label in lanes.axes[0].texts] == ["1"]  # step 2 waits: not drawn as run yet
    plt.close(lanes)
    assert _press_until_done(box) == 4
    assert player.rows[1]["value"] == 9 and player.rows[1]["done after"] == 4  # read the committed 9 after s1's commit
    assert player.stock() == 8
    assert _open_sessions(engine) == 0


@pytest.mark.parametrize("fix", ["atomic UPDATE", "REPEATABLE READ + retry"])
def test_the_other_fixes_leave_eight(engine, fix):
    player = race_player.Player(engine, fix)
    while player.next():
        pass
    assert all(r["as expected"] for r in player.rows), player.table()
    assert player.stock() == 8
    assert _open_sessions(engine) == 0


def test_changing_the_fix_halfway_closes_the_sessions(engine):
    box = race_player.widget(engine, fix="SELECT … FOR UPDATE")
    box.next_step.click()
    box.next_step.click()  # s1 holds the row, s2 waits for it
    assert _open_sessions(engine) == 2
    box.fix.value = "atomic UPDATE"
    assert _open_sessions(engine) == 0 and box.player.rows == []
    with engine.connect() as conn:  # the pooled connections are back to the server's settings
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
