"""Seed the dataset from data/sql at a scale, keep a template copy, and reset from it in about a second."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config, db, marker, provision, urls
from .errors import WorkbookError
from .state_lock import hold

if TYPE_CHECKING:
    import psycopg

SQL_DIR = Path(__file__).resolve().parent.parent / "data" / "sql"
STEP = "-- step: "
# On two cores, two sessions load at once. Each creates and fills its tables in one transaction (so both skip
# the WAL) and adds the keys that stay within its own tables; the steps not named here run after both.
FIRST = ("drop old tables",)
LANES = (("users", "profiles", "posts", "comments", "foreign keys to users and posts"), ("products", "orders"))
LANE_SETUP = "parameters"  # each session needs its own (temporary) parameters table
LOCK_WAIT = "10s"  # how long a step waits for another session's lock on the dataset tables
APP_NAME = "workbook-seed"  # the seed's sessions, so a new seed can end those an interrupted one left behind


def steps() -> list[tuple[str, str]]:
    """(label, SQL) for every `-- step:` section of data/sql/*.sql, in file order."""
    result = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        for chunk in path.read_text().split(STEP)[1:]:
            label, _, sql = chunk.partition("\n")
            result.append((label.strip(), sql))
    return result


def dataset_version() -> str:
    """A fingerprint of data/sql: a database seeded from other SQL is reseeded by seed_if_needed."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(SQL_DIR.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def template_name(dbname: str) -> str:
    """The pristine copy kept beside a seeded database."""
    return f"{dbname}_template"


def _terminate_others(admin: psycopg.Connection, dbname: str, application_name: str | None = None) -> int:
    """End the other sessions on `dbname` (only those named `application_name`, if given); how many."""
    return len(admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND application_name = coalesce(%s, application_name)", [dbname, application_name]).fetchall())


def _connect(url: str) -> psycopg.Connection:
    """A seed session: tagged, and ended by the server soon after its client dies (kill -9, closed laptop)."""
    conn = db.connect(url, application_name=APP_NAME)
    conn.execute("SET client_connection_check_interval = '1s'")
    return conn


def save_template(dbname: str) -> bool:
    """Copy the freshly seeded database to its template; False if this server does not let us."""
    import psycopg

    with db.connect(urls.admin_url()) as admin:
        try:
            _terminate_others(admin, dbname)
            admin.execute(f'DROP DATABASE IF EXISTS "{template_name(dbname)}"')
            admin.execute(f'CREATE DATABASE "{template_name(dbname)}" TEMPLATE "{dbname}" STRATEGY FILE_COPY')
            return True
        except psycopg.errors.InsufficientPrivilege:
            return False


def seed(scale: str | None = None, progress: Callable[[str], None] = print) -> float:
    """Load the dataset at `scale` into the workbook database (refusing foreign databases); seconds taken.

    An interrupted seed leaves the database unmarked (no 'scale'), so the next seed_if_needed does it again.
    """
    scale = scale or config.scale()
    if scale not in config.SCALES:
        raise WorkbookError(f"Unknown scale {scale!r}; use one of {', '.join(config.SCALES)}.")
    with _seeding(scale):
        provision.ensure_database(scale)
        url = urls.libpq_url(scale)
        start = time.perf_counter()
        with _connect(url) as conn:
            db.check_version(conn)  # an older server is refused before anything is written
            marker.claim(conn)
            ended = _terminate_others(conn, conn.info.dbname, APP_NAME)  # an interrupted seed's leftover sessions
            if ended:
                progress(f"  ended {ended} session(s) of an interrupted seed")
            conn.execute("DELETE FROM _workbook.meta WHERE key = 'scale'")  # not seeded until the last step
            dbname = conn.info.dbname
        _drop_template(dbname)  # until the new one is saved, reset reseeds instead of restoring old data
        _load(url, scale, progress)
        kept = save_template(dbname)
        progress(f"  template copy {template_name(dbname)}: {'saved' if kept else 'not allowed here (reset will reseed)'}")
        return time.perf_counter() - start


def _seeding(scale: str) -> AbstractContextManager[None]:
    """The lock that lets one process at a time seed or reset a scale's database."""
    return hold(f"seed-{urls.database_name(scale)}", f"seeding or resetting the {scale} dataset")


def _drop_template(dbname: str) -> None:
    """Drop the template copy of `dbname`, where this role may."""
    import psycopg

    with db.connect(urls.admin_url()) as admin, suppress(psycopg.errors.InsufficientPrivilege):
        admin.execute(f'DROP DATABASE IF EXISTS "{template_name(dbname)}" WITH (FORCE)')


def _load(url: str, scale: str, progress: Callable[[str], None]) -> None:
    """Run the seed steps: the first alone, the lanes in parallel sessions, the rest (marker last) alone."""
    sql = dict(steps())
    last = [label for label in sql if label not in {*FIRST, LANE_SETUP, *(s for lane in LANES for s in lane)}]
    _run_steps(url, scale, sql, FIRST, progress)
    with ThreadPoolExecutor(len(LANES)) as pool:
        for done in [pool.submit(_run_steps, url, scale, sql, (LANE_SETUP, *lane), progress) for lane in LANES]:
            done.result()  # a lane's error is raised here
    _run_steps(url, scale, sql, last, progress,
               after=lambda conn: conn.execute("INSERT INTO _workbook.meta VALUES ('dataset', %s) ON CONFLICT (key) "
                                               "DO UPDATE SET value = excluded.value", [dataset_version()]))


def _run_steps(url: str, scale: str, sql: dict[str, str], labels: Sequence[str], progress: Callable[[str], None],
               after: Callable[[psycopg.Connection], Any] | None = None) -> None:
    """Run these steps in one transaction of a session of their own (tables it creates and fills skip the WAL)."""
    with _connect(url) as conn, conn.transaction():
        conn.execute("SELECT set_config('workbook.scale', %s, false)", [scale])
        for label in labels:
            t0 = time.perf_counter()
            db.bounded(conn, sql[label], "a session still uses the dataset tables: close it (or run `workbook reset`, "
                                         "which disconnects everyone) and seed again", timeout=LOCK_WAIT)
            progress(f"  {label:<34}{time.perf_counter() - t0:6.2f} s")
        if after is not None:
            after(conn)


def seed_if_needed(scale: str | None = None, progress: Callable[[str], None] = print) -> bool:
    """Seed unless the database already holds this scale; True if it seeded (a concurrent seed is waited for)."""
    scale = scale or config.scale()
    with _seeding(scale):
        provision.ensure_database(scale)
        url = urls.libpq_url(scale)
        with db.connect(url) as conn:
            db.check_version(conn)  # setup() and `workbook seed` refuse an older server in one line, first
            seeded_from = (marker.marker(conn) or {}).get("dataset")  # None: seeded by the docker init scripts
            if marker.seeded_scale(conn) == scale and seeded_from in (None, dataset_version()):
                return False
        if seeded_from is not None:
            progress("data/sql changed since this database was seeded.")
        progress(f"Seeding the {scale} dataset into {urls.where(url)} …")
        seconds = seed(scale, progress)
        progress(f"Seeded in {seconds:.1f} s.")
        return True


def reset(scale: str | None = None, progress: Callable[[str], None] = print) -> float:
    """Restore the pristine dataset from the template copy (or reseed when there is none); seconds taken."""
    scale = scale or config.scale()
    with _seeding(scale):
        start = time.perf_counter()
        url = urls.libpq_url(scale)
        with db.connect(url) as conn:
            if marker.marker(conn) is None:
                raise WorkbookError(f"Refusing to reset {urls.where(url)}: the workbook did not create it. Nothing was changed.")
            dbname, owner = conn.info.dbname, conn.info.user
        with db.connect(urls.admin_url()) as admin:
            has_template = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                         [template_name(dbname)]).fetchone()
            if has_template:
                _terminate_others(admin, dbname)
                admin.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template_name(dbname)}" '
                              f'STRATEGY FILE_COPY OWNER "{owner}"')
                return time.perf_counter() - start
        progress("No template copy: reseeding instead.")
        return seed(scale, progress)
