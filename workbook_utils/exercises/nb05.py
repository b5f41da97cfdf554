"""Exercises of notebook 05 (zero-downtime migrations): a safe index, a batched backfill, a foreign key.

Each answer is an Alembic `upgrade()` function. The checker writes its whole cell (imports and helpers too, see
cells.py) into a revision file, runs it through Alembic against fresh copies of users and posts in a schema of its
own, and reports what it observed. Conditions are drawn at each check: the size of posts and, for q1, the name of
an INVALID index on posts(user_id) a failed earlier run left; q2's users (ids shifted, some missing, the held row
anywhere in the middle); for q3, the name of a key a failed run left NOT VALID. q1 and q3 run each answer twice per
check, without the leftover and with it, so an answer that ignores leftovers, or hard-codes one name, fails every
check (a draw of "none" would let it pass one check in a few). q3's offline SQL is read with PostgreSQL's
parser (sqltree.py), quoted names included.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import first_line
from . import Question, WrongKind, sqltree
from .cells import standalone_source
from .draws import Draw

if TYPE_CHECKING:
    from ..workbook import Workbook

SCHEMA = "nb05_exercises"
PROVIDED = {"sa", "op", "context", "revision", "down_revision", "branch_labels", "depends_on"}  # HEADER's names
HEADER = ('"""An exercise answer."""\nimport sqlalchemy as sa\nfrom alembic import context, op\n\n'
          'revision = "ex1"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n\n')

INDEX_STARTER = '''
def upgrade():
    op.create_index("ix_posts_user_id", "posts", ["user_id"])
'''
BACKFILL_STARTER = '''
def upgrade():
    op.execute("UPDATE users SET email_domain = split_part(email, '@', 2)")
'''
FK_STARTER = '''
def upgrade():
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"])
'''


def _copies(wb: Workbook, extra: str = "") -> None:
    """Fresh copies of users and posts in the exercises' schema (plus `extra` SQL run there)."""
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        # An earlier answer the checker gave up on (still running) would hold the schema: end it, never wait on it.
        conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s "
                     "AND datname = current_database() AND usename = current_user",  # never another learner's
                     [f"{wb.app_name}-exercise"])
        db.bounded(conn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}",
                   f"another session holds {SCHEMA}: run the exercise cell again", timeout="10s")
        for t in ("users", "posts"):
            conn.execute(f"CREATE TABLE {SCHEMA}.{t} (LIKE public.{t} INCLUDING ALL); "
                         f"INSERT INTO {SCHEMA}.{t} SELECT * FROM public.{t}")
        conn.execute(f"SET search_path TO {SCHEMA}; {extra}" if extra else "SELECT 1")


def _config(wb: Workbook, upgrade: Callable[[], None], folder: str, **attributes: Any) -> Any:
    """A Config whose only revision is the learner's upgrade() function."""
    from .. import migrations

    source = standalone_source(upgrade, provided=PROVIDED)  # the whole cell: its imports and helpers too
    name = upgrade.__name__
    future = [line for line in source.splitlines(True) if line.startswith("from __future__")]  # first in a file
    body = "".join(line for line in source.splitlines(True) if line not in future)
    Path(folder, "ex1_answer.py").write_text("".join(future) + HEADER + body
                                             + (f"\n\nupgrade = {name}\n" if name != "upgrade" else ""))
    return migrations.config(wb.url, SCHEMA, [Path(folder)], application_name=f"{wb.app_name}-exercise", **attributes)


def _offline_sql(cfg: Any) -> str:
    """The revision's SQL as `alembic upgrade --sql` prints it; a call that needs a live connection, said plainly."""
    from .. import migrations

    try:
        return migrations.offline_sql(cfg, "ex1")
    except AttributeError as error:
        if "MockConnection" not in str(error):
            raise
        raise WrongKind(f"in offline (--sql) mode, which the checker runs first, op.get_bind() has no live "
                        f"connection ({first_line(str(error))}): guard that call with context.is_offline_mode(), "
                        "or use op.execute(…)") from None


def _reached(hold: Any, run: Any, timeout: float = 20.0) -> bool:
    """Whether the revision reached its end (its transaction now held open); False at once if the run ended first."""
    deadline = time.monotonic() + timeout
    while not hold.reached.wait(0.02):
        if run.done() or time.monotonic() > deadline:
            return False
    return True


def _sql(wb: Workbook, sql: str) -> Any:
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        return conn.execute(sql).fetchone()[0]


INDEX_CLAIMS = ("the build runs under a lock_timeout of its own, a minute or more (§4): it waits out a long request",
                "a valid B-tree index on posts(user_id), covering every row (no WHERE), exists",
                "no invalid index is left on posts",
                "a write during the migration waited on it")
ENV_LOCK_TIMEOUT = 0.1  # s: env.py's lock_timeout in the check (2 s in the notebook); its open request outlasts it
# Each check runs both cases: no leftover, then two under drawn names, one of them without "posts" or "user" in it
# (an answer that drops the names it recognises fails). Never the reference's own name (the answer that drops that
# name and builds it again would pass) and never "none" (an answer ignoring leftovers would pass).
LEFTOVER = "an invalid index on posts(user_id) left by a failed earlier run"  # q1's draws: their names
LEFTOVER_NAMES = ("posts_user_id_idx", "ix_posts_user_id_old", "idx_posts_user", "posts_user_id_idx1")
OTHER_LEFTOVER = "another one, under a name that does not say what it indexes"
OTHER_LEFTOVER_NAMES = ("tmp_build_1", "lookup_fast", "ix_3f9a2c", "by_author")
STALE_KEY = "a NOT VALID key posts.user_id → users left by a failed earlier run"  # q3's draw: its name
# Never the reference's own name (posts_user_id_fkey): an answer that adds that name whatever is there would pass.
STALE_KEY_NAMES = ("fk_posts_users", "posts_user_fk", "fk_author", "ref_1")
INDEX_EXPECTED = {"the squawk rules your revision's SQL breaks": "none",
                  **dict(zip(INDEX_CLAIMS, (True, True, True, False), strict=True))}
VALID_INDEX = """
    SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = '{schema}.posts'::regclass AND indisvalid AND indpred IS NULL
                     AND indnkeyatts = 1 AND indkey[0] = (SELECT attnum FROM pg_attribute
                                                          WHERE attrelid = indrelid AND attname = 'user_id')
                     AND (SELECT amname FROM pg_class JOIN pg_am ON pg_am.oid = relam WHERE pg_class.oid = indexrelid)
                         = 'btree'),
           NOT EXISTS (SELECT FROM pg_index WHERE indrelid = '{schema}.posts'::regclass AND NOT indisvalid)"""


def _posts_drawn(wb: Workbook, draw: Draw | None) -> None:
    """Fresh copies whose posts are shaped by the draw (every nth post deleted): the size is never the same twice."""
    gap = draw.integer("every nth post deleted", 2, 9) if draw else 0
    _copies(wb, f"DELETE FROM posts WHERE id % {gap} = 0" if gap else "")


def _leftover(wb: Workbook, name: str) -> None:
    """An INVALID index `name` on posts(user_id), as a failed concurrent build leaves it (§2: a unique build meets a
    duplicate)."""
    import psycopg

    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        try:
            conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON {SCHEMA}.posts (user_id)')
        except psycopg.errors.UniqueViolation:
            pass
        if not conn.execute(f"SELECT NOT indisvalid FROM pg_index WHERE indexrelid = '{SCHEMA}.\"{name}\"'::regclass"
                            ).fetchone()[0]:
            raise AssertionError(f"the checker's leftover {name} was built valid: posts has no duplicate user_id")


def index_verdict(wb: Workbook, upgrade: Callable[[], None], draw: Draw | None = None) -> dict[str, Any]:
    """Run the answer on posts shaped by the draw without a leftover; if all holds, again with two INVALID indexes on
    posts(user_id) under drawn names (never ix_posts_user_id; one without posts or user in it): an answer that drops
    the names it knows, or ignores leftovers, fails every check."""
    verdict = _index_case(wb, upgrade, draw, [])
    if draw is None or verdict != INDEX_EXPECTED:
        return verdict
    return _index_case(wb, upgrade, draw, [draw.choice(LEFTOVER, LEFTOVER_NAMES),
                                           draw.choice(OTHER_LEFTOVER, OTHER_LEFTOVER_NAMES)])


def _index_case(wb: Workbook, upgrade: Callable[[], None], draw: Draw | None, leftovers: list[str]) -> dict[str, Any]:
    """Lint the answer's offline SQL, then run it while a request's transaction is open on posts; a write probes
    posts once the build waits for that request, and again at the revision's end (its transaction held open)."""
    from alembic import command

    from .. import db, migrations
    from ..errors import WorkbookError
    from ..locks import wait_until_blocked

    _posts_drawn(wb, draw)
    for name in leftovers:
        _leftover(wb, name)
    libpq = wb.url.replace("+psycopg", "")
    hold = migrations.Hold(timeout=20)
    with tempfile.TemporaryDirectory() as folder:
        offline = _offline_sql(_config(wb, upgrade, folder))
        findings, build_timeout = migrations.squawk(offline), build_lock_timeout(offline)
        cfg = _config(wb, upgrade, folder, on_version_apply=[hold], lock_timeout=f"{ENV_LOCK_TIMEOUT * 1000:.0f}ms")
        with db.connect(libpq, autocommit=False, application_name=wb.app_name) as writer, \
                db.connect(libpq, application_name=wb.app_name) as observer:
            since = migrations.server_now(observer)
            writer.execute(f"UPDATE {SCHEMA}.posts SET title = title WHERE id = 1")  # a request mid-transaction
            run = migrations.in_background(command.upgrade, cfg, "ex1")
            try:  # a build waits for that request to finish; then a second request arrives
                pid = migrations.session_pid(observer, cfg.attributes["application_name"], 3, since)
                wait_until_blocked(observer, pid, 3)
                waiting_since = time.monotonic()
                late_waited = migrations.probe(libpq, wb.app_name, f"UPDATE {SCHEMA}.posts SET id = id WHERE id = 2")
                time.sleep(max(0.0, waiting_since + 2 * ENV_LOCK_TIMEOUT - time.monotonic()))   # a long request
            except WorkbookError:  # the migration never waited (it built nothing, or failed at once)
                late_waited = False
            writer.rollback()
            try:  # and a write at the revision's end (its transaction held open): a lock taken after the build
                if _reached(hold, run):
                    late_waited = late_waited or migrations.probe(libpq, wb.app_name,
                                                                  f"UPDATE {SCHEMA}.posts SET id = id WHERE id = 2")
            finally:
                hold.release()
            long_enough = build_timeout is None or build_timeout == 0 or build_timeout >= 60   # None: never set
            outlasted = _without_lock_timeout(run) and long_enough
    with db.connect(libpq, application_name=wb.app_name) as conn:
        valid, clean = conn.execute(VALID_INDEX.format(schema=SCHEMA)).fetchone()
    if valid and not _builds_an_index(offline):
        raise WrongKind("your revision's offline SQL (`alembic upgrade --sql`, what a reviewer and squawk read) builds "
                        "no index: keep the build out of `if not context.is_offline_mode()` (only catalog reads belong "
                        "there)")
    return {"the squawk rules your revision's SQL breaks": ", ".join(findings) or "none",
            **dict(zip(INDEX_CLAIMS, (outlasted, valid, clean, late_waited), strict=True))}


def _without_lock_timeout(run: Any) -> bool:
    """Whether the revision ended without a lock timeout (55P03); any other error of it is raised, for the answer."""
    from sqlalchemy.exc import OperationalError

    try:
        run.result(timeout=30)
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != "55P03":
            raise
        return False
    return True


BACKFILL_CLAIMS = ("every row holds its email's domain",
                   "no transaction held more than a tenth of the rows locked at once",
                   "other sessions saw rows filled in while it ran (batches committed)")


# Each row an UPDATE writes, logged with its (top-level) transaction: a row written twice keeps both writers.
WRITTEN_BY = f"""
    CREATE TABLE written_by (xid bigint, id bigint);
    CREATE FUNCTION log_written() RETURNS trigger LANGUAGE plpgsql AS
      'BEGIN INSERT INTO {SCHEMA}.written_by SELECT txid_current(), id FROM written; RETURN NULL; END';
    CREATE TRIGGER written_by AFTER UPDATE ON users REFERENCING NEW TABLE AS written
      FOR EACH STATEMENT EXECUTE FUNCTION log_written()"""
LARGEST_WRITER = f"SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT id) AS n FROM {SCHEMA}.written_by GROUP BY xid) t"
# Rows whose xmax is an open transaction of the backfill's sessions (the migration's, and any other it opens with its
# engine): those they have updated or locked (FOR UPDATE, FOR KEY SHARE …) and not yet released.
LOCKED_BY = (f"SELECT count(*) FROM {SCHEMA}.users WHERE xmax IN (SELECT backend_xid FROM pg_stat_activity "
             "WHERE application_name = %s AND datname = current_database() AND usename = current_user)")


def _held_row(wb: Workbook, draw: Draw) -> tuple[int, int]:
    """Copies whose users are shaped by the draw (ids shifted, some missing); (their number, the id to hold)."""
    offset = draw.integer("users' ids shifted by", 0, 500)
    gap = draw.integer("every nth user deleted", 3, 9)
    _copies(wb, f"ALTER TABLE users ADD COLUMN email_domain text; UPDATE users SET id = -id; "
                f"UPDATE users SET id = -id + {offset}; DELETE FROM users WHERE id % {gap} = 0; {WRITTEN_BY}")
    rows = _sql(wb, f"SELECT count(*) FROM {SCHEMA}.users")
    position = draw.integer("held row's position (%)", 25, 75)
    held = _sql(wb, f"SELECT id FROM {SCHEMA}.users ORDER BY id OFFSET {rows * position // 100} LIMIT 1")
    return rows, held


def backfill_verdict(wb: Workbook, upgrade: Callable[[], None], draw: Draw) -> dict[str, Any]:
    """Run the answer while a request holds one row (drawn, between a quarter and three quarters of the ids). If the
    backfill waits for that row, count from another session the rows it holds locked and those already committed;
    if it goes around the row, let the row go once every other row is filled. All along, count the rows whose xmax
    is the backfill's open transaction (updated or locked FOR UPDATE by it). Afterwards, a trigger's log says which
    transactions wrote each row: the largest one's rows were all locked at once, even if later batches rewrote them."""
    from alembic import command

    from .. import db, migrations

    rows, held = _held_row(wb, draw)
    libpq = wb.url.replace("+psycopg", "")
    locked, committed = 0, 0
    with tempfile.TemporaryDirectory() as folder:
        cfg = _config(wb, upgrade, folder)
        with db.connect(libpq, autocommit=False, application_name=wb.app_name) as request, \
                db.connect(libpq, application_name=wb.app_name) as observer:
            copied = [x for x, in observer.execute(f"SELECT DISTINCT xmin::text FROM {SCHEMA}.users")]
            since = migrations.server_now(observer)
            request.execute(f"SELECT FROM {SCHEMA}.users WHERE id = %s FOR UPDATE", [held])  # one row, held (every mode waits)
            run = migrations.in_background(command.upgrade, cfg, "ex1")
            pid = None
            try:
                app = cfg.attributes["application_name"]
                pid = migrations.session_pid(observer, app, 5, since)
                locked, committed = _while_held(observer, run, pid, app, rows)
            finally:
                request.rollback()
            deadline = time.monotonic() + 30
            while pid and not run.done() and time.monotonic() < deadline:  # the rest of the run, the row let go
                locked = max(locked, observer.execute(LOCKED_BY, [app]).fetchone()[0])
                futures.wait([run], timeout=0.01)
            run.result(timeout=30)
            largest = observer.execute(f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {SCHEMA}.users "
                                       "WHERE xmin::text <> ALL(%s) GROUP BY xmin::text) t", [copied]).fetchone()[0]
            largest = max(largest, observer.execute(LARGEST_WRITER).fetchone()[0])
    wrong = _sql(wb, f"SELECT count(*) FROM {SCHEMA}.users "
                     "WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)")
    holds = (wrong == 0, max(locked, largest) <= max(1, rows // 10), committed > 0)
    return dict(zip(BACKFILL_CLAIMS, holds, strict=True))


def _while_held(observer: Any, run: Any, pid: int, app: str, rows: int, timeout: float = 10.0) -> tuple[int, int]:
    """(most rows the backfill's open transaction held locked so far, rows committed) when it waits for the held row, or when
    it has filled every other row without waiting (it went around the row: nothing of its own is locked then; the
    row is let go a second later, so an answer that never comes back for it has ended by then)."""
    filled = f"SELECT count(*) FROM {SCHEMA}.users WHERE email_domain IS NOT NULL"
    deadline, peak = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and not run.done():
        peak = max(peak, observer.execute(LOCKED_BY, [app]).fetchone()[0])  # sampled all along, not only at a wait
        if observer.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid]).fetchone()[0]:
            unlocked = observer.execute(f"SELECT count(*) FROM (SELECT FROM {SCHEMA}.users "
                                        "FOR UPDATE SKIP LOCKED) t").fetchone()[0]
            return max(peak, rows - 1 - unlocked), observer.execute(filled).fetchone()[0]  # the held row aside
        if (done := observer.execute(filled).fetchone()[0]) >= rows - 1:
            futures.wait([run], timeout=1.0)  # one that gave up on the held row ends now; one that comes back waits
            return peak, done
        time.sleep(0.01)
    return peak, observer.execute(filled).fetchone()[0]


def build_lock_timeout(sql: str) -> float | None:
    """The lock_timeout (s; 0: none) a revision's first concurrent index build runs under, read off its offline SQL:
    the last session-level setting before it (env.py's first among them). None if it builds no index concurrently."""
    import re

    value = None
    for statement in sqltree.split(sql):
        node = sqltree.one(statement)
        if sqltree.kind(node) == "IndexStmt" and node.concurrent:
            return value
        if sqltree.kind(node) == "VariableSetStmt" and node.name == "lock_timeout" and not node.is_local:
            given = re.search(r"lock_timeout\s*(?:=|to)\s*(?:'([^']*)'|([\w.]+))", statement, re.IGNORECASE)
            given = given and (given[1] if given[1] is not None else given[2])
            value = _seconds(given or "0")   # RESET: the server's default, none
        elif given := re.search(r"set_config\(\s*'lock_timeout'\s*,\s*'([^']*)'\s*,\s*'?(false|f|off|no|0)\b",
                                statement, re.IGNORECASE):
            value = _seconds(given[1])
    return None


def _builds_an_index(sql: str) -> bool:
    """Does the offline SQL build an index?"""
    return any(sqltree.kind(sqltree.one(statement)) == "IndexStmt" for statement in sqltree.split(sql))


def _seconds(setting: str) -> float:
    """A time setting as PostgreSQL reads it (a bare number is milliseconds; DEFAULT is lock_timeout's, 0)."""
    import re

    found = re.fullmatch(r"([\d.]+)\s*(us|ms|s|min|h|d)?", setting.strip().lower())   # '10 min' too
    units = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400}
    return float(found[1]) * units[found[2]] if found else 0.0


def fk_steps(sql: str) -> dict[str, bool]:
    """From a revision's offline SQL, read with PostgreSQL's parser: is every foreign key added NOT VALID, and is it
    validated after the ADD's transaction ended (a COMMIT, or the ADD ran in autocommit)?"""
    from pglast.enums import TransactionStmtKind

    adds, in_transaction, add_open, separate = [], False, False, False
    for statement in sqltree.split(sql):
        node = sqltree.one(statement)
        if sqltree.kind(node) == "TransactionStmt":
            in_transaction = node.kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)
            add_open = add_open and in_transaction
            continue
        changes = _do_changes(node.args[0].arg.sval) if sqltree.kind(node) == "DoStmt" else sqltree.table_changes(statement)
        for change in changes:
            if change.action == "AddConstraint" and change.kind == "foreign":
                adds.append(change)
                add_open, separate = in_transaction, False
            elif change.action == "ValidateConstraint" and adds:
                separate = not add_open
    return {"the key is added NOT VALID (no scan under the ADD's lock)": bool(adds) and all(a.not_valid for a in adds),
            "VALIDATE runs after the ADD's transaction committed": separate}


def _do_changes(body: str) -> list[sqltree.Change]:
    """The foreign keys a DO block's PL/pgSQL adds or validates, read off its words (its SQL may sit in format())."""
    import re

    changes = []
    for found in re.finditer(r"ALTER\s+TABLE\b[^;']*", body, re.IGNORECASE):
        words = found[0]
        if re.search(r"VALIDATE\s+CONSTRAINT", words, re.IGNORECASE):
            changes.append(sqltree.Change("ValidateConstraint", "", None))
        elif re.search(r"FOREIGN\s+KEY", words, re.IGNORECASE):
            changes.append(sqltree.Change("AddConstraint", "", None, "foreign", bool(re.search(r"NOT\s+VALID", words,
                                                                                                 re.IGNORECASE))))
    return changes


def fk_verdict(wb: Workbook, upgrade: Callable[[], None], draw: Draw | None = None) -> dict[str, Any]:
    """Run the answer without a stale key; if all holds, again with a NOT VALID key under the drawn name: an answer
    that ignores a stale key, or knows one name, fails every check."""
    verdict = _fk_case(wb, upgrade, draw, None)
    if draw is None or verdict != FK_EXPECTED:
        return verdict
    return _fk_case(wb, upgrade, draw, draw.choice(STALE_KEY, STALE_KEY_NAMES))


def _fk_case(wb: Workbook, upgrade: Callable[[], None], draw: Draw | None, stale: str | None) -> dict[str, Any]:
    """Read the answer's offline SQL (NOT VALID, then VALIDATE in a later transaction), then run it with its
    transaction held open at its end and probe a write to posts and to users meanwhile; afterwards the catalog says
    whether the ADD and the VALIDATE were one transaction (one op.execute string holding both, say). The draw
    shapes posts; `stale` names a NOT VALID key a failed earlier run left, if any."""
    from alembic import command

    from .. import migrations

    _posts_drawn(wb, draw)
    if stale:
        _stale_key(wb, stale)
    hold = migrations.Hold(timeout=20)
    with tempfile.TemporaryDirectory() as folder:
        steps = fk_steps(_offline_sql(_config(wb, upgrade, folder)))
        run = migrations.in_background(command.upgrade, _config(wb, upgrade, folder, on_version_apply=[hold]), "ex1")
        try:
            if not _reached(hold, run):
                run.result(timeout=1)  # the answer raised before the end: report that
            libpq = wb.url.replace("+psycopg", "")
            blocked = migrations.probe(libpq, wb.app_name, f"UPDATE {SCHEMA}.posts SET id = id WHERE false; "
                                                            f"UPDATE {SCHEMA}.users SET id = id WHERE false")
        finally:
            hold.release()
        run.result(timeout=30)
    validated = _sql(wb, f"SELECT count(*) = 1 AND bool_and(convalidated) FROM pg_constraint WHERE contype = 'f' "
                         f"AND conrelid = '{SCHEMA}.posts'::regclass AND confrelid = '{SCHEMA}.users'::regclass")
    later = _sql(wb, VALIDATED_LATER.format(schema=SCHEMA))
    steps["VALIDATE runs after the ADD's transaction committed"] &= later
    return {"posts.user_id references users by one key, validated": validated, **steps,
            "writes waited at the revision's end": blocked}


def _stale_key(wb: Workbook, name: str) -> None:
    """A NOT VALID key posts.user_id → users called `name`, as a run whose VALIDATE failed (a lock timeout) leaves it."""
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        conn.execute(f'ALTER TABLE {SCHEMA}.posts ADD CONSTRAINT "{name}" FOREIGN KEY (user_id) '
                     f"REFERENCES {SCHEMA}.users NOT VALID")


FK_EXPECTED = {"posts.user_id references users by one key, validated": True,
               "the key is added NOT VALID (no scan under the ADD's lock)": True,
               "VALIDATE runs after the ADD's transaction committed": True, "writes waited at the revision's end": False}


# VALIDATE rewrites the constraint's catalog row (convalidated); the ADD wrote its triggers' rows. The same xmin on
# both: one transaction did both, e.g. two statements in one op.execute string (one simple query, one transaction).
VALIDATED_LATER = """
    SELECT coalesce(bool_and(NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgconstraint = c.oid AND t.xmin = c.xmin)),
                    false)
      FROM pg_constraint c WHERE contype = 'f' AND conrelid = '{schema}.posts'::regclass"""


def cleanup(wb: Workbook) -> None:
    """Drop the exercises' schema."""
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


INVALID_ON_POSTS = ("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'posts'::regclass AND NOT i.indisvalid AND NOT EXISTS "
                    "(SELECT FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid)")  # §2: not mid-build
FOREIGN_KEYS = ("SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = 'posts'::regclass "
                "AND confrelid = 'users'::regclass")


def index_fixed() -> None:
    """Reference for q1."""
    import sqlalchemy as sa
    from alembic import context, op

    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")  # §4: the build waits for older snapshots; long, not endless
        if not context.is_offline_mode():  # §2: a failed run's leftovers, whatever their names (no catalog offline)
            for name in op.get_bind().execute(sa.text(INVALID_ON_POSTS)).scalars().all():
                op.drop_index(name, table_name="posts", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)
        op.execute("SET lock_timeout = '2s'")  # env.py's setting again, for what follows


def backfill_fixed() -> None:
    """Reference for q2."""
    import sqlalchemy as sa
    from alembic import op

    conn = op.get_bind()
    with op.get_context().autocommit_block():
        lo, hi = conn.execute(sa.text("SELECT min(id) - 1, max(id) FROM users")).one()
        for start in range(lo or 0, hi or 0, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": start, "hi": start + 5})


def fk_fixed() -> None:
    """Reference for q3."""
    import sqlalchemy as sa
    from alembic import context, op

    keys = [] if context.is_offline_mode() else op.get_bind().execute(sa.text(FOREIGN_KEYS)).scalars().all()
    if not keys:  # a failed earlier run may have added it already, under any name: validate that one
        op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
        keys = ["posts_user_id_fkey"]
    with op.get_context().autocommit_block():
        quote = op.get_context().dialect.identifier_preparer.quote  # a name from the catalog, quoted as an identifier
        for name in keys:
            op.execute(f"ALTER TABLE posts VALIDATE CONSTRAINT {quote(name)}")


Q1 = Question(
    name="q1",
    text="This revision indexes posts.user_id the way the original sheet did. Fix upgrade() so that squawk finds "
         "nothing, a valid B-tree index ends up on posts(user_id) with no invalid one beside it, and a write arriving "
         "during the build goes through. A failed earlier run may have left an INVALID index on posts behind, "
         "under any name: each check runs your revision twice, without a leftover and with two under drawn names "
         "(never ix_posts_user_id), on posts of a drawn size; its env.py's lock_timeout is 100 ms, and a request "
         "stays open longer than that while your build waits. Revision 0001's drop of its own name is not enough "
         "here. Allow about 10 minutes (a catalog query, an offline guard, autocommit_block()).",
    shape="the cell's `def upgrade(): …` (its imports and helpers may sit in the same cell), then "
          "`q1.check(upgrade)`; the catalog is read under `if not context.is_offline_mode():`.",
    hint_text="§1: which form of CREATE INDEX leaves writers alone, and where can Alembic run it? §2: what does "
              "IF NOT EXISTS do with an invalid leftover, and where does the catalog say an index is invalid "
              "(`context.is_offline_mode()` first: offline there is no catalog)? §4: which lock_timeout should the "
              "build run under?",
    solution_code="INVALID_ON_POSTS = (\"SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \"\n"
                  "                    \"WHERE i.indrelid = 'posts'::regclass AND NOT i.indisvalid AND NOT EXISTS \"\n"
                  "                    \"(SELECT FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid)\")"
                  "  # §2: not mid-build\n\n\n"
                  "def upgrade():\n"
                  "    with op.get_context().autocommit_block():\n"
                  "        op.execute(\"SET lock_timeout = '10min'\")  # §4: long, not endless\n"
                  "        if not context.is_offline_mode():  # §2: a failed run's leftovers, whatever their names\n"
                  "            for name in op.get_bind().execute(sa.text(INVALID_ON_POSTS)).scalars().all():\n"
                  "                op.drop_index(name, table_name=\"posts\", postgresql_concurrently=True, if_exists=True)\n"
                  "        op.create_index(\"ix_posts_user_id\", \"posts\", [\"user_id\"],\n"
                  "                        postgresql_concurrently=True, if_not_exists=True)\n"
                  "        op.execute(\"SET lock_timeout = '2s'\")  # env.py's setting again\n\nq1.check(upgrade)",
    discussion="Why it works: `postgresql_concurrently=True` emits `CREATE INDEX CONCURRENTLY`, whose "
               "`ShareUpdateExclusiveLock` lets writers through, and `autocommit_block()` commits Alembic's "
               "transaction first, since the concurrent build cannot run inside one. The leftovers of failed runs "
               "are found in the catalog (`pg_index.indisvalid` false), whatever their names, and dropped "
               "concurrently first: `IF NOT EXISTS` alone would keep one with the same name (§2). The query skips a "
               "table with a build in progress (`pg_stat_progress_create_index`): a build still running is invalid "
               "too, and not a leftover. "
               "The build runs under a long but finite `lock_timeout` of its own (§4).\n"
               "Common wrong answers:\n"
               "- `postgresql_concurrently=True` without `autocommit_block()`: `ActiveSqlTransaction`;\n"
               "- `if_not_exists=True` without dropping the leftover: the invalid index stays, and no valid one is "
               "built;\n"
               "- dropping `ix_posts_user_id` by name (as revision 0001 does): a leftover under another name stays "
               "invalid beside yours;\n"
               "- no `if_not_exists=True`: squawk's prefer-robust-stmts (a re-run fails on the existing name);\n"
               "- a partial index (`postgresql_where=…`): valid, but it does not cover every row.",
)
Q2 = Question(
    name="q2",
    text="users has a new, empty column email_domain. Rewrite this backfill so that each row gets "
         "split_part(email, '@', 2) and no transaction ever holds more than a tenth of the rows locked "
         "(each batch commits before the next begins). The checker shapes users differently at each check "
         "(ids shifted, some missing) and holds one row, somewhere in the middle, while your backfill runs.",
    shape="the cell's `def upgrade(): …`, then `q2.check(upgrade)`; the starter is the failing form.",
    hint_text="§8: batches of ids (id ranges, or keyset: the next n ids after the last one done), and something "
              "that makes each UPDATE commit on its own (a savepoint does not: its row locks last until the whole "
              "transaction ends). Read the ids' range from the table; do not assume it.",
    solution_code="def upgrade():\n"
                  "    conn = op.get_bind()\n"
                  "    with op.get_context().autocommit_block():\n"
                  "        lo, hi = conn.execute(sa.text(\"SELECT min(id) - 1, max(id) FROM users\")).one()\n"
                  "        for start in range(lo or 0, hi or 0, 5):\n"
                  "            conn.execute(sa.text(\"UPDATE users SET email_domain = split_part(email, '@', 2) \"\n"
                  "                                 \"WHERE id > :lo AND id <= :hi\"), {\"lo\": start, \"hi\": start + 5})"
                  "\n\nq2.check(upgrade)",
    discussion="Why it works: inside `autocommit_block()` each `UPDATE` is its own transaction, so a batch's row "
               "locks end at its commit and other sessions see the rows filled as it goes. The ranges come from "
               "the table's own `min(id)` and `max(id)`.\n"
               "Common wrong answers:\n"
               "- batches in Alembic's transaction, or each in a savepoint: every row stays locked to the end;\n"
               "- small batches up to some id, then one `UPDATE` for the rest: its transaction locks most rows;\n"
               "- a first transaction that locks or fills every row (`SELECT … FOR UPDATE`, one big `UPDATE`), then "
               "batches: the checker counts the rows each transaction locked or wrote, even rows rewritten later;\n"
               "- `FOR UPDATE SKIP LOCKED` batches that never come back for the skipped row: a row left empty.\n"
               "`FOR UPDATE SKIP LOCKED` batches that do come back for it are correct too.",
)
Q3 = Question(
    name="q3",
    text="Add the foreign key posts.user_id → users.id in one revision so that it ends up validated and writes to "
         "posts and users never wait on the migration's scan. A failed earlier run (its VALIDATE timed out) may "
         "have left the key NOT VALID, under any name: each check runs your revision twice, without a stale key "
         "and with one under a drawn name, on posts of a drawn size. It reads the revision's offline SQL (which "
         "statement scans, in which transaction), then runs it with its transaction held open at its end (as a "
         "long scan would) and tries a write meanwhile. Allow about 10 minutes (a catalog query, an offline "
         "guard, autocommit_block()).",
    shape="the cell's `def upgrade(): …`, then `q3.check(upgrade)`; any constraint name will do for a new key; "
          "the catalog is read under `if not context.is_offline_mode():`.",
    hint_text="§7: NOT VALID first; VALIDATE takes a weaker lock, but only if the stronger one from the first step "
              "is no longer held: how does a revision commit half-way? `pg_constraint` lists the keys already on "
              "posts (`context.is_offline_mode()` first: offline there is no catalog).",
    solution_code="FOREIGN_KEYS = (\"SELECT conname FROM pg_constraint WHERE contype = 'f' \"\n"
                  "                \"AND conrelid = 'posts'::regclass AND confrelid = 'users'::regclass\")\n\n\n"
                  "def upgrade():\n"
                  "    keys = []  # offline (--sql) there is no catalog: the script adds the key\n"
                  "    if not context.is_offline_mode():\n"
                  "        keys = op.get_bind().execute(sa.text(FOREIGN_KEYS)).scalars().all()\n"
                  "    if not keys:  # a failed run may have added it already, under any name\n"
                  "        op.create_foreign_key(\"posts_user_id_fkey\", \"posts\", \"users\", [\"user_id\"], [\"id\"],\n"
                  "                              postgresql_not_valid=True)\n"
                  "        keys = [\"posts_user_id_fkey\"]\n"
                  "    with op.get_context().autocommit_block():\n"
                  "        quote = op.get_context().dialect.identifier_preparer.quote  # a catalog name, as an identifier\n"
                  "        for name in keys:\n"
                  "            op.execute(f\"ALTER TABLE posts VALIDATE CONSTRAINT {quote(name)}\")\n\n"
                  "q3.check(upgrade)",
    discussion="Why it works: `NOT VALID` makes the `ADD` brief (no scan under its `ShareRowExclusiveLock` on both "
               "tables), and `autocommit_block()` commits it before `VALIDATE`, which scans under "
               "`ShareUpdateExclusiveLock` on posts and `RowShareLock` on users: writes go on. A key a failed run left "
               "NOT VALID is found in `pg_constraint` and validated, whatever its name, instead of added twice.\n"
               "Common wrong answers:\n"
               "- `NOT VALID` and `VALIDATE` in one transaction (the sheet's form): the strong lock lasts through "
               "the scan;\n"
               "- both statements in one `op.execute(\"…; …\")` string, even in `autocommit_block()`: psycopg sends "
               "it as one query, which the server runs as one transaction;\n"
               "- a validating `ADD` in `autocommit_block()`: the scan still runs under the strong lock;\n"
               "- `NOT VALID` alone: the key never checks the old rows;\n"
               "- adding `posts_user_id_fkey` whatever is there: the name is taken (an error), or a stale key under "
               "another name stays NOT VALID.",
)
QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook) -> tuple[Any, Any, Any]:
    """q1, q2, q3 of notebook 05, bound to this notebook's database; q1's leftover, q2's users, q3's stale key and
    the size of posts are drawn."""
    q1 = Q1.exercise(reference=lambda draw: INDEX_EXPECTED,  # what index_fixed shows, under either draw
                     evaluate=lambda upgrade, draw: index_verdict(wb, upgrade, draw), starter=INDEX_STARTER, drawn=True)
    q2 = Q2.exercise(reference=lambda draw: dict.fromkeys(BACKFILL_CLAIMS, True),  # every claim holds
                     evaluate=lambda upgrade, draw: backfill_verdict(wb, upgrade, draw), starter=BACKFILL_STARTER,
                     drawn=True)
    q3 = Q3.exercise(reference=lambda draw: FK_EXPECTED, evaluate=lambda upgrade, draw: fk_verdict(wb, upgrade, draw),
                     starter=FK_STARTER, drawn=True)
    return q1, q2, q3
