"""Alembic from Python against one schema: configs, the revisions' offline SQL, squawk, and the lock ledger.

Taught in notebook 05 (which shows each mechanism in a cell first); notebook 07 (planned) tests the same revisions.
The environment lives in data/migrations/ (env.py documents its contract).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import project_root
from .errors import WorkbookError

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    from alembic.config import Config

MIGRATIONS = project_root() / "data" / "migrations"
SAFE, UNSAFE = MIGRATIONS / "versions", MIGRATIONS / "unsafe"
SQUAWK_CONFIG = MIGRATIONS / ".squawk.toml"


def config(url: str, schema: str, versions: list[Path] = (SAFE,), **attributes: Any) -> Config:
    """An Alembic Config built in code: env.py reads schema, url and the other `attributes` (see its docstring)."""
    from alembic.config import Config

    cfg = Config(output_buffer=io.StringIO())
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(map(str, versions)))
    cfg.attributes.update(url=url, schema=schema, **attributes)  # attributes: no %-interpolation of the URL
    return cfg


def revisions(cfg: Config) -> list[str]:
    """Every revision id the config sees, oldest first."""
    from alembic.script import ScriptDirectory

    return [script.revision for script in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]


def down_revision(cfg: Config, revision: str) -> str | None:
    """The revision `revision` follows (None for a first revision)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(cfg).get_revision(revision).down_revision


def current(cfg: Config) -> str | None:
    """The revision the schema's alembic_version row names (None before the first one)."""
    from alembic import command

    cfg.stdout = io.StringIO()
    command.current(cfg)
    out = cfg.stdout.getvalue().split()
    return out[0] if out else None


def offline_sql(cfg: Config, revision: str) -> str:
    """The SQL `alembic upgrade prev:revision --sql` writes for this one revision (nothing is run)."""
    from alembic import command

    previous = down_revision(cfg, revision)
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, f"{previous}:{revision}" if previous else revision, sql=True)
    return cfg.output_buffer.getvalue()


def squawk(sql: str) -> list[str]:
    """The squawk rules `sql` breaks (with data/migrations/.squawk.toml), in order, one name per finding."""
    exe = Path(sys.executable).with_name("squawk")
    exe = str(exe) if exe.exists() else shutil.which("squawk")
    if exe is None:
        raise WorkbookError("squawk is not installed: pip install squawk-cli")
    out = subprocess.run([exe, "--config", str(SQUAWK_CONFIG), "--reporter", "json"], input=sql,
                         capture_output=True, text=True, timeout=60)
    if out.returncode not in (0, 1) or not out.stdout.strip().startswith("["):
        raise WorkbookError(f"squawk failed: {out.stderr.strip() or out.stdout.strip()}")
    return [finding["rule_name"] for finding in json.loads(out.stdout)]


def in_background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run fn(*args) in a thread (a migration that may wait on a lock); `.result(timeout)` re-raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migration")
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


class Hold:
    """An on_version_apply callback: each revision's transaction stays open at its end until `release()`.

    A stand-in for a build that takes minutes at production size: the locks the revision still holds at its
    end are held while the notebook observes the workload, at any data size. Never longer than `timeout` s.
    """

    def __init__(self, timeout: float = 20.0) -> None:
        self.reached, self._released, self.timeout = threading.Event(), threading.Event(), timeout

    def __call__(self, **_: Any) -> None:
        self.reached.set()
        self._released.wait(self.timeout)

    def release(self) -> None:
        self._released.set()


# In this database and of this role: on a shared server, other learners' migrations carry the same application_name.
SESSION_SQL = """
    SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database() AND usename = current_user
      AND backend_start >= coalesce(%s::timestamptz, '-infinity') ORDER BY backend_start DESC LIMIT 1"""


def session_pid(conn: psycopg.Connection, application_name: str, timeout: float = 10.0, since: Any = None) -> int:
    """The pid of the session tagged `application_name` (e.g. the migration's) in this database and of this role, once
    it has connected.

    `since` (a server timestamp, e.g. `SELECT clock_timestamp()` before starting the migration) skips sessions that
    started earlier: a previous migration's backend may still be exiting.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(SESSION_SQL, [application_name, since]).fetchone()
        if row:
            return row[0]
        time.sleep(0.01)
    raise WorkbookError(f"no session named {application_name} connected within {timeout} s")


def server_now(conn: psycopg.Connection) -> Any:
    """The server's clock now (for `session_pid(..., since=...)`)."""
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


ALL_LOCKS_SQL = """
    SELECT l.locktype, coalesce(c.relname, l.relation::text, l.virtualxid) AS object, l.mode, l.granted
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN pg_class c ON c.oid = l.relation
    WHERE l.pid = %s AND a.datname = current_database() AND a.usename = current_user  -- virtualxid rows have no database
      AND NOT (l.locktype = 'relation' AND c.relname LIKE 'pg_%%')
    ORDER BY l.granted DESC, l.locktype, object, l.mode"""


def all_locks(conn: psycopg.Connection, pid: int) -> pd.DataFrame:
    """Like locks.locks_held, virtualxid rows included: a lock on another transaction's virtual id is how a
    session waits for that transaction to end (CREATE INDEX CONCURRENTLY waiting for older transactions)."""
    import pandas as pd

    return pd.DataFrame(conn.execute(ALL_LOCKS_SQL, [pid]).fetchall(), columns=["locktype", "object", "mode", "granted"])


def probe(url: str, app_name: str, sql: str) -> bool:
    """True if `sql` cannot get its lock within 100 ms (a reader's or writer's statement probing held locks)."""
    import psycopg

    from .db import connect

    with connect(url, autocommit=False, application_name=app_name) as conn:
        conn.execute("SET LOCAL lock_timeout = '100ms'")
        try:
            conn.execute(sql)
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            conn.rollback()
    return False


def ledger_row(url: str, app_name: str, statement: str, tables: list[str], concurrently: bool = False) -> dict:
    """Run `statement` in a sandbox, read the locks it holds from pg_locks, probe a read and a write, undo it.

    A statement that cannot run in a transaction (CONCURRENTLY) runs for real and is observed from a second
    session while an open writer's transaction makes it wait; undo a CONCURRENTLY build yourself afterwards.
    """
    from .db import connect
    from .locks import locks_held, wait_until_blocked

    filenodes = "SELECT relname, pg_relation_filenode(oid) FROM pg_class WHERE oid = ANY(%s::regclass[])"
    with connect(url, autocommit=False, application_name=app_name) as ddl, \
            connect(url, application_name=app_name) as observer:
        before = dict(observer.execute(filenodes, [tables]).fetchall())
        if concurrently:
            ddl.autocommit = True
            with connect(url, autocommit=False, application_name=app_name) as writer:
                writer.execute(f"UPDATE {tables[0]} SET id = id WHERE false")  # an open writer: the build waits
                build = in_background(ddl.execute, statement)
                wait_until_blocked(observer, ddl.info.backend_pid)
                held = locks_held(observer, ddl.info.backend_pid)
                blocks = {kind: probe(url, app_name, sql) for kind, sql in _probes(tables).items()}
                writer.rollback()
                build.result(timeout=30)
            after = dict(observer.execute(filenodes, [tables]).fetchall())
        else:
            ddl.execute(statement)
            held = locks_held(observer, ddl.info.backend_pid)
            blocks = {kind: probe(url, app_name, sql) for kind, sql in _probes(tables).items()}
            after = dict(ddl.execute(filenodes, [tables]).fetchall())
            ddl.rollback()
    held = held[held["granted"] & held["relation"].isin([t.split(".")[-1] for t in tables])]
    return {"statement": statement, "locks": "\n".join(f"{r.relation}: {r.mode}" for r in held.itertuples()),
            **blocks, "rewrites": before != after}


def _probes(tables: list[str]) -> dict[str, str]:
    """A reader's and a writer's statement on each table (they take AccessShare and RowExclusive locks)."""
    return {"blocks reads": "; ".join(f"SELECT FROM {t} LIMIT 0" for t in tables),
            "blocks writes": "; ".join(f"UPDATE {t} SET id = id WHERE false" for t in tables)}
