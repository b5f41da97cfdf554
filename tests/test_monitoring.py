"""monitoring.py against the real server: exact per-request counts under concurrency, nothing left after errors."""

from __future__ import annotations

import threading
import warnings

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DataError

from workbook_utils import db, monitoring, urls

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx
    from fastapi.testclient import TestClient


@pytest.fixture
def engine():
    engine = db.make_engine(urls.database_url("tiny"), connect_args={"options": "-c statement_timeout=5s"})
    yield engine
    engine.dispose()


def test_counts_are_exact_per_request_under_concurrency_and_stop_after_shutdown(engine):
    barrier = threading.Barrier(3, timeout=10)
    app = FastAPI()
    remove = monitoring.count_queries(engine)
    monitoring.track_requests(app)

    @app.get("/work")
    def work(n: int):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            barrier.wait()  # the three requests overlap for certain
            for _ in range(n - 1):
                conn.execute(text("SELECT 1"))
        return n

    got = {}
    with TestClient(app) as client:
        threads = [threading.Thread(target=lambda n=n: got.update({n: client.get(f"/work?n={n}").headers}))
                   for n in (2, 5, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    remove()
    assert {n: int(h["X-DB-Query-Count"]) for n, h in got.items()} == {2: 2, 5: 5, 3: 3}
    assert all(float(h["X-DB-Time-Ms"]) > 0 for h in got.values())
    assert not any(engine.dispatch.after_cursor_execute)  # removed: nothing is counted any more


def test_a_failing_statement_leaves_no_start_time_and_counts_the_feed_endpoints(engine):
    remove = monitoring.count_queries(engine)
    with engine.connect() as conn:
        with pytest.raises(DataError):
            conn.execute(text("SELECT 1/0"))
        conn.rollback()
        assert conn.info["query_start"] == []
    remove()
    with TestClient(monitoring.feed_app(engine)) as client:
        counts = {p: int(client.get(p).headers["X-DB-Query-Count"]) for p in
                  ("/user?id=1", "/feed?limit=3", "/feed-eager?limit=3", "/stats")}
    assert counts == {"/user?id=1": 1, "/feed?limit=3": 4, "/feed-eager?limit=3": 2, "/stats": 8}
