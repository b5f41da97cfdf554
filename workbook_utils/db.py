"""Where the database is, how to connect, and the marker that says a database belongs to the workbook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import config, server
from .config import WorkbookError

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

APP_ROLE = "workbook"  # the demos connect as this ordinary role, the way an application does
OWNER = "database-integration-workbook"
MIN_SERVER_VERSION = 140000
CONNECT_TIMEOUT = 5


def database_name(scale: str) -> str:
    """Embedded database for a scale: `workbook` (small), `workbook_tiny`, `workbook_large`."""
    return "workbook" if scale == "small" else f"workbook_{scale}"


def _plain(url: str) -> str:
    """A libpq URL: DATABASE_URL with any SQLAlchemy driver suffix removed."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+")[0]
    if not sep or base not in ("postgresql", "postgres"):
        raise WorkbookError(f"DATABASE_URL must be a PostgreSQL URL such as postgresql://user:password@host:5432/db "
                            f"(it starts with {scheme!r}).")
    return f"postgresql://{rest}"


def libpq_url(scale: str | None = None) -> str:
    """Plain URL of the workbook database (psql and pgbench accept it)."""
    if ext := config.external_url():
        return _plain(ext)
    port = server.status().port or server.DEFAULT_PORT
    return f"postgresql://{APP_ROLE}@127.0.0.1:{port}/{database_name(scale or config.scale())}"


def database_url(scale: str | None = None) -> str:
    """SQLAlchemy URL of the workbook database, naming the psycopg 3 driver explicitly."""
    return libpq_url(scale).replace("postgresql://", "postgresql+psycopg://", 1)


def admin_url() -> str:
    """Who creates databases: the embedded superuser, or DATABASE_URL's own role on its server."""
    if ext := config.external_url():
        parts = urlsplit(_plain(ext))
        return parts._replace(path="/postgres").geturl()
    return f"postgresql://{server.SUPERUSER}@127.0.0.1:{server.status().port}/postgres"


def where(url: str) -> str:
    """host:port/dbname of a URL, for messages (never the password)."""
    p = urlsplit(url)
    return f"{p.hostname or 'localhost'}:{p.port or 5432}{p.path}"


def explain_error(exc: Exception, url: str) -> WorkbookError:
    """Turn a connection failure into one or two lines that say what to try."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split("FATAL:")[-1].strip()  # keep the server's own words, drop libpq's preamble
    place = where(url)
    hint = "check DATABASE_URL" if config.external_url() else "start it with `workbook db start` (or `make lab`)"
    if "password authentication failed" in text or "no password supplied" in text:
        return WorkbookError(f"PostgreSQL at {place} rejected the login: {text}. Check the user and password in DATABASE_URL.")
    if "does not exist" in text:
        return WorkbookError(f"PostgreSQL at {place}: {text}. Create it, or run `workbook seed` for the embedded server.")
    if "refused" in text or "timeout" in text.lower() or "No such file" in text or "could not translate" in text:
        return WorkbookError(f"Cannot reach PostgreSQL at {place} ({text.split(':')[-1].strip()}). Is it running? {hint}.")
    return WorkbookError(f"Cannot use PostgreSQL at {place}: {text}")


def connect(url: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A psycopg connection (autocommit by default) whose failure is explained, not dumped."""
    import psycopg

    url = url or libpq_url()
    kwargs.setdefault("autocommit", True)
    try:
        return psycopg.connect(_plain(url), connect_timeout=CONNECT_TIMEOUT, application_name="workbook", **kwargs)
    except psycopg.OperationalError as exc:
        raise explain_error(exc, url) from None


def check_version(conn: psycopg.Connection) -> str:
    """The server's version string; refuses servers older than PostgreSQL 14."""
    num = conn.info.server_version
    version = conn.execute("SHOW server_version").fetchone()[0]
    if num < MIN_SERVER_VERSION:
        raise WorkbookError(f"PostgreSQL {version} is too old: the workbook needs PostgreSQL 14 or newer.")
    return version


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for the workbook database (psycopg 3 driver)."""
    from sqlalchemy import create_engine

    kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    return create_engine(url or database_url(), **kwargs)


def marker(conn: psycopg.Connection) -> dict[str, str] | None:
    """The workbook's marker table as a dict, or None when this database was not made by the workbook."""
    if conn.execute("SELECT to_regclass('_workbook.meta')").fetchone()[0] is None:
        return None
    rows = dict(conn.execute("SELECT key, value FROM _workbook.meta").fetchall())
    return rows if rows.get("owner") == OWNER else None


def foreign_tables(conn: psycopg.Connection) -> list[str]:
    """Tables in this database that are not the workbook's dataset or marker."""
    rows = conn.execute("""
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_workbook')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def mark(conn: psycopg.Connection) -> None:
    """Record that this database belongs to the workbook."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS _workbook")
    conn.execute("CREATE TABLE IF NOT EXISTS _workbook.meta (key text PRIMARY KEY, value text NOT NULL)")
    conn.execute("INSERT INTO _workbook.meta VALUES ('owner', %s) ON CONFLICT (key) DO NOTHING", [OWNER])


def claim(conn: psycopg.Connection) -> None:
    """Allow writes only to a database the workbook created, or an empty one (which is then marked)."""
    if marker(conn) is not None:
        return
    others = foreign_tables(conn)
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        raise WorkbookError(
            f"Refusing to change {conn.info.dbname} on {conn.info.host}:{conn.info.port}: it holds tables the workbook "
            f"did not create ({shown}) and no workbook marker. Nothing was changed. "
            "Point DATABASE_URL at an empty database, or one the workbook seeded.")
    mark(conn)


def seeded_scale(conn: psycopg.Connection) -> str | None:
    """The scale this database was seeded at, or None if it is not (completely) seeded."""
    return (marker(conn) or {}).get("scale")


def ensure_database(scale: str) -> None:
    """Embedded server: start it, create the application role and the scale's database (marked) if missing."""
    if config.external_url():
        return
    server.start()
    name = database_name(scale)
    with connect(admin_url()) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone() is None:
            # CREATEROLE: notebook 01 makes a role with a CONNECTION LIMIT; pg_monitor: read pg_stat_* in full.
            admin.execute(f"CREATE ROLE {APP_ROLE} LOGIN CREATEDB CREATEROLE")
            admin.execute(f"GRANT pg_monitor, pg_signal_backend TO {APP_ROLE}")
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
            with connect(admin_url().rsplit("/", 1)[0] + f"/{name}") as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            with connect(libpq_url(scale)) as conn:
                mark(conn)


def bounded(conn: psycopg.Connection, sql: str, blocked: str, timeout: str = "5s") -> None:
    """Run DDL that may queue behind another session's lock, giving up after `timeout` with a clear message."""
    import psycopg

    conn.execute("SELECT set_config('lock_timeout', %s, false)", [timeout])
    try:
        conn.execute(sql)
    except psycopg.errors.LockNotAvailable:
        raise WorkbookError(f"Waited {timeout} for a lock: {blocked}.") from None
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:  # else the rollback resets it
            conn.execute("SET lock_timeout = 0")
