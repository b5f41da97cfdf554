"""Connection pools watched, sized and killed under load: a pool watcher, sizing arithmetic, backend kills (notebook 01)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from . import db
from .errors import WorkbookError, first_line

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine


@dataclass
class PoolWatch:
    """What one engine's pool did while `watch_pool` ran: server connections opened, checkouts, connections closed."""

    connects: int = 0
    checkouts: int = 0
    closes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@contextmanager
def watch_pool(engine: Engine) -> Iterator[PoolWatch]:
    """Count the pool's connects, checkouts and closes while the block runs (notebook 01 §8 writes such listeners out)."""
    watch = PoolWatch()

    def on_connect(dbapi_conn, record) -> None:
        with watch._lock:
            watch.connects += 1

    def on_checkout(dbapi_conn, record, proxy) -> None:
        with watch._lock:
            watch.checkouts += 1

    def on_close(dbapi_conn, record) -> None:
        with watch._lock:
            watch.closes += 1

    listeners = {"connect": on_connect, "checkout": on_checkout, "close": on_close}
    for name, fn in listeners.items():
        event.listen(engine, name, fn)
    try:
        yield watch
    finally:
        for name, fn in listeners.items():
            event.remove(engine, name, fn)


def connections_needed(processes: int, pool_size: int, max_overflow: int, engines_per_process: int = 1) -> int:
    """The most connections a deployment can open: every pool full and every overflow slot in use."""
    return processes * engines_per_process * (pool_size + max_overflow)


def connections_available(max_connections: int, superuser_reserved: int = 3, reserved: int = 0, headroom: int = 0) -> int:
    """Connections an application role may open: max_connections minus the reserved slots and your own headroom."""
    return max_connections - superuser_reserved - reserved - headroom


def server_limits(engine: Engine) -> dict[str, int]:
    """max_connections and the reserved slots of the server behind `engine` (reserved_connections is PG 16+)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT name, setting::int FROM pg_settings WHERE name IN "
            "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")).all())
    return {"max_connections": rows["max_connections"], "superuser_reserved": rows["superuser_reserved_connections"],
            "reserved": rows.get("reserved_connections", 0)}


# Server-wide on purpose: max_connections counts the sessions of every database, a role's CONNECTION LIMIT those of
# every database it is in. (An ordinary role sees other roles' sessions without their backend_type: not counted.)
IN_USE_SQL = """
    SELECT count(*) FILTER (WHERE backend_type = 'client backend'), count(*) FILTER (WHERE usename = current_user),
           (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user)
    FROM pg_stat_activity"""


def connections_left(engine: Engine) -> int:
    """How many more connections this role may open now: the server's free slots, or what is left of the role's
    CONNECTION LIMIT when that is fewer (a workshop room's learners have one). Notebook 01 §5 sizes its sweep by it."""
    from sqlalchemy import text

    limits = server_limits(engine)
    with engine.connect() as conn:
        server_in_use, role_in_use, role_limit = conn.execute(text(IN_USE_SQL)).one()
    left = limits["max_connections"] - limits["superuser_reserved"] - limits["reserved"] - server_in_use
    return left if role_limit < 0 else min(left, role_limit - role_in_use)


OWN = "pid = ANY(%s) AND datname = current_database() AND usename = current_user"  # these pids, if they are ours


def terminate(url: str, pids: list[int], timeout: float = 5.0) -> None:
    """Terminate these backends (as a restart or an idle killer would), waiting until each is gone (bounded).

    Notebook 01 §6 shows the statement at its heart: `pg_terminate_backend(pid, timeout_ms)` returns only once the
    backend has exited, or false when it is still there after the timeout. Only backends in this database and of
    this role are touched: a pid that has already gone may belong to another learner's session by now.
    """
    with db.connect(url) as conn:  # a connection of its own: never one from the pool being killed
        done = conn.execute(f"SELECT pid, pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE {OWN}",
                            [int(timeout * 1000), pids]).fetchall()
        # false also means "no such backend" (one that went meanwhile): only those still listed are alive
        alive = [pid for pid, gone in done if not gone]
        if alive:
            alive = [row[0] for row in conn.execute(f"SELECT pid FROM pg_stat_activity WHERE {OWN}", [alive])]
    if alive:
        raise TimeoutError(f"backends {alive} still present after {timeout} s")


def wait_gone(url: str, pid: int, timeout: float = 5.0, why: str = "the server did not end it") -> None:
    """Wait (bounded) until backend `pid` has left pg_stat_activity, as when the server ends a session itself.

    Notebook 01 §3 waits this way for `idle_in_transaction_session_timeout`. Only a backend of this database and
    role counts: once ended, its pid may be reused by another learner's session.
    """
    import time

    deadline = time.monotonic() + timeout
    with db.connect(url) as conn:
        while conn.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {OWN}", [[pid]]).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backend {pid} still present after {timeout} s: {why}")
            time.sleep(0.05)


def kill_then_use(engine: Engine, url: str, requests: int = 1, in_flight: bool = False) -> dict[str, Any]:
    """Fill the pool, terminate all its backends (a server restart, as the pool sees it), then serve `requests`.

    The sequence is written out in notebook 01 §6. With `in_flight`, the pool's connections are still checked
    out when their backends die (requests in the middle of their work): each of them then runs its query.
    Returns how many requests failed, the first error (class and SQLSTATE), how many connections the pool opened
    after the kill, and how many checkouts `pool_pre_ping` pinged (a connection the pool has just opened is not).
    """
    from sqlalchemy import exc, text

    # NullPool and friends have no size; pool_size=0 ("no limit") still keeps what it opened
    size = max(engine.pool.size(), 1) if hasattr(engine.pool, "size") else 1
    held = [engine.connect() for _ in range(size)]
    killed = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in held]
    if not in_flight:
        for conn in held:
            conn.close()  # back to the pool, still open
        held = []
    terminate(url, killed)
    errors: list[str] = []

    def failed(error: exc.DBAPIError) -> None:
        errors.append(f"{type(error).__name__} {getattr(error.orig, 'sqlstate', None) or ''}".strip())

    dialect, pings = engine.dialect, [0]
    ping = dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return ping(dbapi_connection)

    dialect.do_ping = counted_ping  # pool_pre_ping's round trip, counted (only connections the pool already had)
    try:
        with watch_pool(engine) as watch:
            for conn in held:  # requests that had their connection when the server went away
                try:
                    conn.execute(text("SELECT 1"))
                except exc.DBAPIError as error:
                    failed(error)
                finally:
                    conn.close()
            pids = []
            for _ in range(requests):
                try:
                    with engine.connect() as conn:
                        pids.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
                except exc.DBAPIError as error:
                    failed(error)
    finally:
        del dialect.do_ping  # the dialect's own method again
    return {"requests": len(held) + requests, "failed": len(errors), "first error": errors[0] if errors else "",
            "connections opened after the kill": watch.connects, "checkouts pinged": pings[0], "killed pids": killed,
            "pids after": pids}


def create_limited_role(url: str, name: str, limit: int) -> str | None:
    """Create (or recreate) a login role with a CONNECTION LIMIT; its URL, or None (why printed) if not allowed."""
    import secrets
    from urllib.parse import quote, urlsplit

    import psycopg
    from psycopg import sql

    password = secrets.token_urlsafe(16)
    try:
        with db.connect(url) as conn:
            if not conn.execute("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
                print(f"Skipped: the role {conn.info.user} may not create roles (it lacks CREATEROLE).")
                return None
            _drop(conn, name)  # a stale role of an earlier run (a class stopped half-way) goes first, with its sessions
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {} PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(limit), sql.Literal(password)))
            # where CONNECT is not granted to PUBLIC (a workshop room's learner databases), the new role needs it
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(name)))
    except psycopg.Error as exc:
        print(f"Skipped: this role cannot create a role with a connection limit ({first_line(exc)}).")
        return None
    parts = urlsplit(url)
    netloc = f"{quote(name)}:{quote(password)}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    role_url = parts._replace(netloc=netloc).geturl()
    try:
        db.connect(role_url).close()
    except WorkbookError as exc:  # e.g. pg_hba.conf admits only known users
        drop_role(url, name)
        print(f"Skipped: the new role {name} cannot log in here ({exc}).")
        return None
    _wait_no_sessions(url, name)  # the probe's backend still counts against the limit until it has exited
    return role_url


def _wait_no_sessions(url: str, role: str, timeout: float = 5.0) -> None:
    """Wait (bounded) until no session of `role` is left in this database, e.g. a backend still exiting."""
    import time

    deadline = time.monotonic() + timeout
    with db.connect(url) as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = current_database()",
                           [role]).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.02)


def drop_role(url: str, name: str) -> None:
    """Drop a role made by `create_limited_role`, ending its sessions first."""
    with db.connect(url) as conn:
        _drop(conn, name)


def _drop(conn: psycopg.Connection, name: str) -> None:
    """End the role's sessions, take back its CONNECT on this database, drop it (if it exists)."""
    from psycopg import sql

    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
        return
    # Ending a role's sessions needs its privileges. PostgreSQL 16+ gives a role's creator (a workshop room's learner)
    # ADMIN OPTION on it, not its privileges; with that option (or CREATEROLE on 15) it may grant them to itself.
    if not conn.execute("SELECT pg_has_role(%s, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')", [name]).fetchone()[0]:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))
    conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s "
                 "AND datname = current_database()", [name])  # the role's name carries the database's
    conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(sql.Identifier(conn.info.dbname),
                                                                         sql.Identifier(name)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
