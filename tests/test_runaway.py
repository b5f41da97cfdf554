"""runaway (notebook 01 §7) against the real server: the request behind a runaway query, with and without
statement_timeout, and nothing left running afterwards."""

from __future__ import annotations

import pytest

from workbook_utils import db, runaway, urls


@pytest.fixture
def url():
    return urls.database_url("tiny")


def _still_running(url: str) -> int:
    with db.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = %s AND state = 'active' "
                            "AND datname = current_database()", [runaway.RUNAWAY]).fetchone()[0]


def test_without_statement_timeout_the_request_times_out_and_the_runaway_is_cancelled_afterwards(url):
    engine = db.make_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        run = runaway.runaway_and_request(engine, url, arrive_after=0.1)
    finally:
        engine.dispose()
    assert run.outcomes.result[0] == "57014: canceling statement due to user request"
    assert run.outcomes.outcome[1] == "TimeoutError"
    assert run.outcomes.seconds.max() < 10 and _still_running(url) == 0
    lanes = run.phases.groupby("worker")["phase"].apply(list).to_dict()
    assert lanes == {0: ["arriving", "runaway query"], 1: ["arriving", "waiting for a connection"]}


def test_with_statement_timeout_the_server_cancels_it_and_the_request_is_served(url):
    engine = db.make_engine(url, pool_size=1, max_overflow=0, pool_timeout=2,
                            connect_args={"options": "-c statement_timeout=300"})
    try:
        run = runaway.runaway_and_request(engine, url, arrive_after=0.1)
    finally:
        engine.dispose()
    assert run.outcomes.result[0] == "57014: canceling statement due to statement timeout"
    assert run.outcomes.outcome[1] == "ok" and run.outcomes.result[1] == 1
    assert "quick query" in run.phases[run.phases.worker == 1].phase.tolist() and _still_running(url) == 0
