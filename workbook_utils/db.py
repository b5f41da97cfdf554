"""Connecting: psycopg connections and SQLAlchemy engines whose failures read as one line, and bounded DDL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import config
from .errors import WorkbookError, first_line
from .urls import database_url, libpq_url, plain, where

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

MIN_SERVER_VERSION = 150000  # PostgreSQL 14 reached end of life in November 2026
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


def too_old(num: int, version: str) -> str | None:
    """Why a server of this version (server_version_num, server_version) cannot run the workbook, or None."""
    if num >= MIN_SERVER_VERSION:
        return None
    return (f"PostgreSQL {version} is too old: the workbook needs PostgreSQL {MIN_SERVER_VERSION // 10000} or newer "
            "(14 reached end of life in November 2026).")


def check_version(conn: psycopg.Connection) -> str:
    """The server's version string (e.g. "15.18"); refuses, in one line, a server older than PostgreSQL 15."""
    version = conn.execute("SHOW server_version").fetchone()[0].split()[0]  # "15.18 (Debian 15.18-0+deb12u1)"
    if problem := too_old(conn.info.server_version, version):
        raise WorkbookError(problem)
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
