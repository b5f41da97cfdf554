"""Pool helpers of notebook 01 against the real server: watcher, arithmetic, kills, limited roles."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import exc, text
from sqlalchemy.pool import NullPool

from workbook_utils import db, pooling, urls
from workbook_utils.errors import WorkbookError

from .elsewhere import alive, another_role


@pytest.fixture
def url():
    return urls.database_url("tiny")


def test_watch_pool_counts_connects_checkouts_and_closes_and_stops_counting_after(url):
    engine = db.make_engine(url, pool_size=2, max_overflow=1)
    try:
        with pooling.watch_pool(engine) as watch:
            held = [engine.connect() for _ in range(3)]
            for conn in held:
                conn.close()   # the last one back finds two idle in the pool: it is closed; two stay open
            with engine.connect():
                pass
        with engine.connect():
            pass
        engine.dispose()   # closes the two idle ones, after the block: not counted
        assert (watch.connects, watch.checkouts, watch.closes) == (3, 4, 1)
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


def test_terminate_accepts_backends_that_are_already_gone(url):
    with db.connect(url) as conn:
        pid = conn.info.backend_pid
    pooling.terminate(url, [pid])   # closed a moment ago: nothing to wait for


def test_terminate_leaves_sessions_of_another_database_or_role_alone(url, scratch_db):
    """A pid that is not this database's and role's (another learner's, or ours reused by them) is not touched."""
    libpq = urls.libpq_url("tiny")
    with another_role(libpq) as stranger, db.connect(scratch_db) as elsewhere, db.connect(stranger) as theirs, \
            db.connect(libpq) as ours:
        pooling.terminate(url, [elsewhere.info.backend_pid, theirs.info.backend_pid, ours.info.backend_pid])
        assert alive(elsewhere) and alive(theirs) and not alive(ours)


def test_connections_left_is_the_roles_connection_limit_less_its_sessions(url):
    """A workshop room's learner has a CONNECTION LIMIT; the embedded server's role has none (the server's slots)."""
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        limits = pooling.server_limits(engine)
        server_room = limits["max_connections"] - limits["superuser_reserved"] - limits["reserved"]
        assert 0 < pooling.connections_left(engine) < server_room  # this session, at least, is in use
    finally:
        engine.dispose()
    with another_role(urls.libpq_url("tiny")) as stranger:
        with db.connect(urls.admin_url()) as admin:
            admin.execute(f'ALTER ROLE "{urlsplit(stranger).username}" CONNECTION LIMIT 5')
        limited = db.make_engine(stranger.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)
        try:
            assert pooling.connections_left(limited) == 5 - 1  # its own session, counting
            with db.connect(stranger), db.connect(stranger):
                assert pooling.connections_left(limited) == 5 - 3
        finally:
            limited.dispose()


def test_a_killed_pool_fails_one_request_without_pre_ping_and_none_with_it(url):
    """SQLAlchemy invalidates the whole pool on the first disconnect: one failure, not one per pooled connection."""
    for options, failed in (({}, 1), ({"pool_pre_ping": True}, 0)):
        engine = db.make_engine(url, pool_size=5, **options)
        try:
            seen = pooling.kill_then_use(engine, url, requests=10)
        finally:
            engine.dispose()
        assert seen["failed"] == failed and seen["requests"] == 10, seen
        assert seen["first error"] == ("OperationalError 57P01" if failed else "")   # admin_shutdown
        assert len(seen["killed pids"]) == 5 and not set(seen["killed pids"]) & set(seen["pids after"])
        assert seen["connections opened after the kill"] == 5   # every pooled connection replaced


def test_requests_in_flight_when_the_backends_die_fail_even_with_pre_ping(url):
    engine = db.make_engine(url, pool_size=3, pool_pre_ping=True)
    try:
        seen = pooling.kill_then_use(engine, url, requests=2, in_flight=True)
    finally:
        engine.dispose()
    assert (seen["requests"], seen["failed"]) == (5, 3), seen


def test_kill_then_use_on_an_engine_that_does_not_pool(url):
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        seen = pooling.kill_then_use(engine, url)
    finally:
        engine.dispose()
    assert seen["failed"] == 0 and len(seen["killed pids"]) == 1


def test_kill_then_use_counts_the_pre_pings_a_fresh_connection_skips(url):
    """pool_pre_ping tests a connection the pool already had, never one it has just opened; its first failed test
    invalidates the whole pool, whose connections are then opened again at checkout (so not tested)."""
    engine = db.make_engine(url, pool_size=2, pool_pre_ping=True)
    try:
        seen = pooling.kill_then_use(engine, url, requests=4)
    finally:
        engine.dispose()
    # checkout 1: tested, dead, pool invalidated; 2: reopened, not tested; 3 and 4: reused, tested
    assert (seen["failed"], seen["connections opened after the kill"], seen["checkouts pinged"]) == (0, 2, 3)
    assert "do_ping" not in vars(engine.dialect)   # the dialect's own method again


def test_wait_gone_returns_once_the_server_ended_the_session_and_times_out_otherwise(url):
    ending = db.connect(url, autocommit=False, options="-c idle_in_transaction_session_timeout=200")
    alive = db.connect(url)
    try:
        pid = ending.execute("SELECT pg_backend_pid()").fetchone()[0]   # then idle in transaction
        pooling.wait_gone(url, pid, timeout=5)
        with pytest.raises(TimeoutError, match=f"backend {alive.info.backend_pid} still present after 0.3 s: why not"):
            pooling.wait_gone(url, alive.info.backend_pid, timeout=0.3, why="why not")
    finally:
        ending.close()
        alive.close()


def test_creating_a_limited_role_again_drops_the_stale_one_and_its_sessions(url):
    """A class that stopped half-way left the role behind, with a session open: creating it again still works."""
    name = "workbook_tiny_stale_role"
    first = pooling.create_limited_role(url, name, 2)
    stale = db.connect(first)   # a session of the stale role, still open
    try:
        again = pooling.create_limited_role(url, name, 2)
        assert again is not None and again != first   # a new password: the role was made again
        with db.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [name]).fetchone()[0] == 0
    finally:
        stale.close()
        pooling.drop_role(url, name)


def test_a_learner_drops_the_role_it_made_while_a_session_of_it_is_still_open():
    """A workshop room's learner (CREATEROLE, owner of their database, no pg_signal_backend): on PostgreSQL 16+ the
    creator of a role holds ADMIN OPTION on it but not its privileges, and ending its sessions needs those."""
    with another_role(urls.libpq_url("tiny")) as stranger:
        learner = urlsplit(stranger).username
        with db.connect(urls.admin_url()) as admin:
            admin.execute(f'ALTER ROLE "{learner}" CREATEROLE')
            admin.execute(f'CREATE DATABASE "{learner}" OWNER "{learner}"')
        try:
            own = urls.with_database(stranger, learner).replace("postgresql://", "postgresql+psycopg://")
            made = pooling.create_limited_role(own, f"{learner}_nb01", 2)
            assert made is not None
            with db.connect(made) as stale:  # a class stopped half-way: the role's session is still open
                pooling.drop_role(own, f"{learner}_nb01")
                assert not alive(stale)
            with db.connect(urls.admin_url()) as admin:
                assert admin.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [f"{learner}_nb01"]).fetchone()[0] == 0
        finally:
            with db.connect(urls.admin_url()) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{learner}" WITH (FORCE)')
                admin.execute(f'DROP ROLE IF EXISTS "{learner}_nb01"')
