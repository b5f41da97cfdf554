"""Pool helpers of notebook 01 against the real server: health snapshot, watcher, arithmetic, kills, limited roles."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text
from sqlalchemy.pool import NullPool

from workbook_utils import db, pooling, urls
from workbook_utils.errors import WorkbookError


@pytest.fixture
def url():
    return urls.database_url("tiny")


def test_pool_health_reports_overflow_in_use_never_negative(url):
    engine = db.make_engine(url, pool_size=3, max_overflow=2)
    try:
        assert engine.pool.overflow() == -3                       # SQLAlchemy's raw number on a fresh pool
        assert pooling.pool_health(engine) == {"pool": "QueuePool", "pool_size": 3, "checked_out": 0, "idle": 0,
                                               "open": 0, "overflow_in_use": 0}
        held = [engine.connect() for _ in range(4)]
        health = pooling.pool_health(engine)
        assert (health["checked_out"], health["open"], health["overflow_in_use"]) == (4, 4, 1)
        for conn in held:
            conn.close()
    finally:
        engine.dispose()
    nullpool = db.make_engine(url, poolclass=NullPool)
    assert pooling.pool_health(nullpool)["pool"] == "NullPool"


def test_watch_pool_counts_connects_checkouts_and_peak(url):
    engine = db.make_engine(url, pool_size=2, max_overflow=1)
    try:
        with pooling.watch_pool(engine, every=0.005) as watch:
            held = [engine.connect() for _ in range(3)]
            for conn in held:
                conn.close()
            with engine.connect():
                pass
        assert (watch.connects, watch.checkouts, watch.peak, watch.in_use) == (3, 4, 3, 0)
        assert watch.timeline()["checked out"].max() <= 3 and len(watch.timeline()) >= 1
    finally:
        engine.dispose()


def test_sizing_arithmetic_counts_overflow():
    assert pooling.connections_needed(10, 5, 10) == 150
    assert pooling.connections_needed(2, 5, 0, engines_per_process=2) == 20
    assert pooling.connections_available(100, 3, 0, 7) == 90


def test_server_limits_reads_the_settings(url):
    engine = db.make_engine(url)
    try:
        limits = pooling.server_limits(engine)
    finally:
        engine.dispose()
    assert limits["max_connections"] == 50 and limits["superuser_reserved"] == 3


def test_terminate_kills_and_waits_for_the_backend(url):
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        pooling.terminate(url, [pid])
        with db.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] == 0
        with pytest.raises(exc.OperationalError):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def test_limited_role_refuses_connections_beyond_its_limit_and_is_dropped(url):
    name = "workbook_tiny_test_limited"
    role_url = pooling.create_limited_role(url, name, 1)
    assert role_url is not None and name in role_url
    try:
        first = db.connect(role_url)
        with pytest.raises(WorkbookError, match="too many connections for role"):
            db.connect(role_url)
        first.close()
    finally:
        pooling.drop_role(url, name)
    with db.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [name]).fetchone()[0] == 0


def test_limited_role_is_skipped_with_a_sentence_when_not_allowed(url, capsys):
    with db.connect(url) as conn:
        conn.execute("DROP ROLE IF EXISTS workbook_tiny_plain")
        conn.execute("CREATE ROLE workbook_tiny_plain LOGIN")   # no CREATEROLE, like many managed-server users
    try:
        plain = url.replace("workbook@", "workbook_tiny_plain@")
        assert pooling.create_limited_role(plain, "workbook_tiny_never", 1) is None
        assert capsys.readouterr().out == "Skipped: the role workbook_tiny_plain may not create roles (it lacks CREATEROLE).\n"
    finally:
        with db.connect(url) as conn:
            conn.execute("DROP ROLE workbook_tiny_plain")


def test_kill_then_use_fails_without_pre_ping_and_recovers_with_it(url):
    for options, outcome in (({}, "OperationalError, connection_invalidated=True"), ({"pool_pre_ping": True}, "ok")):
        engine = db.make_engine(url, pool_size=1, **options)
        try:
            seen = pooling.kill_then_use(engine, url)
        finally:
            engine.dispose()
        assert seen["next use"] == outcome
        assert (seen["pid of next use"] is None) == (outcome != "ok") and seen["pid of next use"] != seen["killed pid"]
