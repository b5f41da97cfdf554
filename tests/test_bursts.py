"""bursts (notebook 01 §2) against the real server: requests at once on a small pool, their lanes from pool events."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from workbook_utils import bursts, db, urls


@pytest.fixture
def engine():
    engine = db.make_engine(urls.database_url("tiny"), pool_size=1, max_overflow=0, pool_timeout=0.2)
    yield engine
    engine.dispose()


def _holds(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.5)
    return name


def _releases_first(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(0.5)
    return name


def _lanes(run):
    return run.phases.groupby("worker")["phase"].apply(list).to_dict()


def test_a_request_that_holds_its_connection_makes_the_other_wait_and_fail(engine):
    run = bursts.requests_at_once(_holds, engine, [1, 2])
    assert sorted(run.outcomes.outcome) == ["TimeoutError", "ok"]
    ok, failed = run.outcomes.index[run.outcomes.outcome == "ok"][0], run.outcomes.index[run.outcomes.outcome != "ok"][0]
    assert _lanes(run)[failed] == [bursts.WAITING]   # it never got a connection
    assert _lanes(run)[ok][:2] == [bursts.WAITING, bursts.HOLDING]
    held = run.phases[(run.phases.worker == ok) & (run.phases.phase == bursts.HOLDING)].iloc[0]
    assert held.end - held.start >= 0.5   # the slow work ran while it held the connection


def test_requests_that_release_first_are_all_served_and_each_lane_shows_the_slow_work_after(engine):
    run = bursts.requests_at_once(_releases_first, engine, [1, 2, 3])
    assert run.count("ok") == 3
    assert all(lane == [bursts.WAITING, bursts.HOLDING, bursts.AFTER] for lane in _lanes(run).values())
    with engine.connect() as conn:
        names = dict(conn.execute(text("SELECT id, name FROM users WHERE id IN (1, 2, 3)")).all())
    assert run.outcomes.result.tolist() == [names[1], names[2], names[3]]   # each request got its own argument
    slow = run.phases[run.phases.phase == bursts.AFTER]
    assert ((slow.end - slow.start) >= 0.5).all()


def test_the_listeners_watch_only_while_the_requests_run(engine):
    listening = bursts.requests_at_once(lambda e, _: bool(e.pool.dispatch.checkout), engine, [None])
    assert listening.outcomes.result.tolist() == [True] and not engine.pool.dispatch.checkout
