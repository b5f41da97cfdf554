"""Connecting: psycopg connections and SQLAlchemy engines whose failures read as one line, and bounded DDL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import config
from .errors import WorkbookError, first_line
from .urls import database_url, libpq_url, plain, where

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

MIN_SERVER_VERSION = 140000
CONNECT_TIMEOUT = 5


def explain_error(exc: Exception, url: str) -> WorkbookError:
    """Turn a connection failure into one or two lines that say what to try."""
    text = first_line(exc).split("FATAL:")[-1].strip()  # keep the server's own words, drop libpq's preamble
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
    kwargs.setdefault("application_name", "workbook")
    try:
        return psycopg.connect(plain(url), connect_timeout=CONNECT_TIMEOUT, **kwargs)
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
