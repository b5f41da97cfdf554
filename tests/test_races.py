"""The race harness against the real server: blocking seen in pg_blocking_pids, outcomes by order, nothing left open."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from workbook_utils import races

ROW = "UPDATE nb_races.items SET n = n - 1 WHERE id = {} RETURNING n"


@pytest.fixture(scope="module")
def engine(seeded):
    from workbook_utils import db, urls

    eng = db.make_engine(urls.database_url("tiny"), connect_args={"application_name": "workbook-races-test"})
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS nb_races CASCADE; CREATE SCHEMA nb_races; "
                          "CREATE TABLE nb_races.items (id int PRIMARY KEY, n int NOT NULL)"))
    yield eng
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA nb_races CASCADE"))
    eng.dispose()


@pytest.fixture(autouse=True)
def items(engine):
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE nb_races.items; INSERT INTO nb_races.items VALUES (1, 10), (2, 10)"))


def _busy_or_locking(engine) -> int:
    """Other sessions of this test that are not idle, or hold a lock (pooled idle connections are fine)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity a WHERE application_name = "
                                 "'workbook-races-test' AND pid <> pg_backend_pid() AND (state <> 'idle' OR EXISTS "
                                 "(SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype <> 'virtualxid'))")).scalar()


def test_a_step_waiting_for_a_lock_is_seen_blocked_and_released_by_the_commit(engine):
    race = races.run(engine, [("s1", ROW.format(1), "ok"), ("s2", ROW.format(1), "BLOCKS"),
                              ("s1", "COMMIT", "ok"), ("s2", "COMMIT", "ok")]).check()
    assert race.steps["waited for"].tolist() == ["", "s1", "", ""]
    assert race.steps["done after"].tolist() == [1, 3, 3, 4]   # step 2 ended once step 3 had run
    assert (race.value(1), race.value(2)) == (9, 8)
    assert race.sessions["s1"] != race.sessions["s2"]
    assert _busy_or_locking(engine) == 0   # no transaction left open, no lock held
    with engine.connect() as conn:            # and the pooled connections are back to the server's settings
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"


def test_check_names_the_steps_that_did_not_behave_as_expected(engine):
    race = races.run(engine, [("s1", ROW.format(1), "BLOCKS"), ("s2", ROW.format(2), "40001"), ("s1", "ROLLBACK")])
    assert race.steps["as expected"].tolist() == [False, False, True]
    with pytest.raises(AssertionError, match=r"step 1 .* expected BLOCKS, got ok; step 2 .* expected 40001, got ok"):
        race.check()


def test_errors_become_outcomes_and_roll_the_session_back(engine):
    race = races.run(engine, [("s1", "SELECT 1/0", "22012"), ("s1", "SELECT 1", "ok"),
                              ("s1", lambda s: s.execute(text("SELECT n FROM nb_races.items WHERE id = 2")).scalar())])
    race.check()
    assert race.steps.loc[1, "error"].startswith("DivisionByZero: division by zero")
    assert race.value(3) == 10 and race.steps.loc[3, "statement"] == "<lambda>"


def test_a_deadlock_aborts_exactly_one_session_and_the_other_commits(engine):
    race = races.run(engine, [("s1", ROW.format(1)), ("s2", ROW.format(2)), ("s1", ROW.format(2), "BLOCKS"),
                              ("s2", ROW.format(1), "BLOCKS"), ("s1", "COMMIT"), ("s2", "COMMIT")],
                     lock_timeout="3s").check()
    assert sorted(race.steps.loc[[3, 4], "outcome"]) == ["40P01", "ok"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(n) FROM nb_races.items")).scalar() == 18  # one transaction's 2 decrements


def test_every_wait_is_bounded_by_lock_timeout(engine):
    with engine.connect() as holder:   # a lock held outside the script, which the script cannot release
        holder.execute(text(ROW.format(1)))
        pid = holder.connection.driver_connection.info.backend_pid
        race = races.run(engine, [("s2", ROW.format(1), "BLOCKS"), ("s2", "ROLLBACK")], lock_timeout="200ms").check()
        holder.rollback()
    assert race.outcome(1) == "55P03" and race.steps.loc[1, "waited for"] == str(pid)


def test_a_step_for_a_waiting_session_queues_behind_it(engine):
    race = races.run(engine, [("s1", ROW.format(1)), ("s2", ROW.format(1), "BLOCKS"), ("s2", ROW.format(2), "BLOCKS|ok"),
                              ("s1", "COMMIT"), ("s2", "COMMIT", "ok")]).check()
    assert race.steps["waited for"].tolist() == ["", "s1", "step 2", "", ""]
    assert race.steps["done after"].tolist() == [1, 4, 4, 4, 5] and race.value(3) == 9


def test_a_step_for_a_waiting_session_that_cannot_block_waits_for_it_first(engine):
    race = races.run(engine, [("s1", ROW.format(1)), ("s2", ROW.format(1), "BLOCKS|55P03"),
                              ("s2", "SELECT 1", "ok"), ("s1", "COMMIT")], lock_timeout="100ms").check()
    assert race.outcome(2) == "55P03"   # s1's COMMIT (step 4) ran only after step 3, so step 2 timed out


def test_a_script_left_open_is_rolled_back_and_its_waiters_end(engine):
    race = races.run(engine, [("s1", ROW.format(1)), ("s2", ROW.format(1), "BLOCKS")]).check()
    assert race.outcome(2) == "ok" and race.value(2) == 9    # s1 was rolled back at the end, so s2 went through
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM nb_races.items WHERE id = 1")).scalar() == 10  # and so was s2


def test_alternatives_and_draw(engine):
    race = races.run(engine, [("s1", ROW.format(1), "ok|40001"), ("s1", "COMMIT", None)]).check()
    fig = races.draw({"one": race, "two": race}, "title", failing=("one",), notes={"two": "final 9"})
    assert len(fig.axes) == 2
    from workbook_utils.charts import FAILING, FIXED

    assert [ax._left_title.get_color() for ax in fig.axes] == [FAILING, FIXED]
    assert fig.axes[1].get_title(loc="left") == "two\nfinal 9"
