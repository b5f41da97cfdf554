"""Connection pools observed and sized: health snapshots, a pool watcher, sizing arithmetic (notebook 01)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from . import db
from .errors import WorkbookError, first_line

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine


def pool_health(engine: Engine) -> dict[str, Any]:
    """A pool snapshot with sane numbers: SQLAlchemy's raw overflow() is negative below pool_size; this is not."""
    from sqlalchemy.pool import QueuePool

    pool = engine.pool
    if not isinstance(pool, QueuePool):  # NullPool and friends have no size, overflow or checkedout()
        return {"pool": type(pool).__name__, "status": pool.status()}
    return {"pool": type(pool).__name__, "pool_size": pool.size(), "checked_out": pool.checkedout(),
            "idle": pool.checkedin(), "open": pool.checkedin() + pool.checkedout(),
            "overflow_in_use": max(pool.overflow(), 0)}


@dataclass
class PoolWatch:
    """What one engine's pool did while `watch_pool` ran: connections opened, checkouts, peak, samples."""

    connects: int = 0
    checkouts: int = 0
    in_use: int = 0
    peak: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, checked out)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def timeline(self) -> pd.DataFrame:
        """Checked-out connections over time (seconds since the watch began)."""
        import pandas as pd

        return pd.DataFrame(self.samples, columns=["seconds", "checked out"]).set_index("seconds")


@contextmanager
def watch_pool(engine: Engine, every: float | None = None) -> Iterator[PoolWatch]:
    """Count the pool's connects and checkouts (pool events); with `every`, sample its checked-out count too."""
    watch, stop, t0 = PoolWatch(), threading.Event(), time.perf_counter()

    def on_connect(dbapi_conn, record) -> None:
        with watch._lock:
            watch.connects += 1

    def on_checkout(dbapi_conn, record, proxy) -> None:
        with watch._lock:
            watch.checkouts += 1
            watch.in_use += 1
            watch.peak = max(watch.peak, watch.in_use)

    def on_checkin(dbapi_conn, record) -> None:
        with watch._lock:
            watch.in_use -= 1

    def sample() -> None:
        while True:
            watch.samples.append((time.perf_counter() - t0, pool_health(engine).get("checked_out", 0)))
            if stop.wait(every):
                return

    listeners = {"connect": on_connect, "checkout": on_checkout, "checkin": on_checkin}
    for name, fn in listeners.items():
        event.listen(engine, name, fn)
    sampler = threading.Thread(target=sample, daemon=True) if every else None
    if sampler:
        sampler.start()
    try:
        yield watch
    finally:
        stop.set()
        if sampler:
            sampler.join(5)
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


def terminate(url: str, pids: list[int], timeout: float = 5.0) -> None:
    """Terminate these backends (as a restart or an idle killer would) and wait, bounded, until they are gone."""
    with db.connect(url) as conn:  # a connection of its own: never one from the pool being killed
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        deadline = time.monotonic() + timeout
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backends {pids} still present after {timeout} s")
            time.sleep(0.05)


def kill_then_use(engine: Engine, url: str) -> dict[str, Any]:
    """Pool one connection, terminate its backend (through `url`), use the engine again: what happened."""
    from sqlalchemy import exc, text

    with engine.connect() as conn:
        killed = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    terminate(url, [killed])
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        return {"next use": "ok", "killed pid": killed, "pid of next use": pid}
    except exc.DBAPIError as error:
        return {"next use": f"{type(error).__name__}, connection_invalidated={error.connection_invalidated}",
                "killed pid": killed, "pid of next use": None}


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
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {} PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(limit), sql.Literal(password)))
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
    return role_url


def drop_role(url: str, name: str) -> None:
    """Drop a role made by `create_limited_role`, ending its sessions first."""
    from psycopg import sql

    with db.connect(url) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
