"""Exercises of notebook 05 (zero-downtime migrations): a safe index, a batched backfill, a foreign key.

Each answer is an Alembic `upgrade()` function. The checker writes it into a revision file, runs it through
Alembic against fresh copies of users and posts in a schema of its own, and reports what it observed.
"""

from __future__ import annotations

import inspect
import re
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Exercise

if TYPE_CHECKING:
    from ..workbook import Workbook

SCHEMA = "nb05_exercises"
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

    source = textwrap.dedent(inspect.getsource(upgrade))
    name = upgrade.__name__
    Path(folder, "ex1_answer.py").write_text(HEADER + source + (f"\n\nupgrade = {name}\n" if name != "upgrade" else ""))
    return migrations.config(wb.url, SCHEMA, [Path(folder)], application_name=f"{wb.app_name}-exercise", **attributes)


def _sql(wb: Workbook, sql: str) -> Any:
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        return conn.execute(sql).fetchone()[0]


def index_verdict(wb: Workbook, upgrade: Callable[[], None]) -> dict[str, Any]:
    """Lint the answer's offline SQL, then run it while a request's transaction is open on posts."""
    from alembic import command

    from .. import db, migrations
    from ..errors import WorkbookError
    from ..locks import wait_until_blocked

    _copies(wb)
    libpq = wb.url.replace("+psycopg", "")
    with tempfile.TemporaryDirectory() as folder:
        cfg = _config(wb, upgrade, folder)
        findings = migrations.squawk(migrations.offline_sql(cfg, "ex1"))
        with db.connect(libpq, autocommit=False, application_name=wb.app_name) as writer, \
                db.connect(libpq, application_name=wb.app_name) as observer:
            since = migrations.server_now(observer)
            writer.execute(f"UPDATE {SCHEMA}.posts SET title = title WHERE id = 1")  # a request mid-transaction
            run = migrations.in_background(command.upgrade, cfg, "ex1")
            try:  # a build waits for that request to finish; then a second request arrives
                pid = migrations.session_pid(observer, cfg.attributes["application_name"], 3, since)
                wait_until_blocked(observer, pid, 3)
                late_waited = migrations.probe(libpq, wb.app_name, f"UPDATE {SCHEMA}.posts SET id = id WHERE id = 2")
            except WorkbookError:  # the migration never waited (it built nothing, or failed at once)
                late_waited = False
            writer.rollback()
            run.result(timeout=30)
    valid = _sql(wb, f"SELECT coalesce(bool_and(indisvalid AND indpred IS NULL), false) FROM pg_index "
                     f"WHERE indrelid = '{SCHEMA}.posts'::regclass AND indkey::text = (SELECT attnum::text "
                     f"FROM pg_attribute WHERE attrelid = '{SCHEMA}.posts'::regclass AND attname = 'user_id')")
    return {"the squawk rules your revision's SQL breaks": ", ".join(findings) or "none",
            "a valid index on posts(user_id), covering every row (no WHERE), exists": valid,
            "a write during the migration waited on it": late_waited}


def backfill_verdict(wb: Workbook, upgrade: Callable[[], None]) -> dict[str, Any]:
    """Run the answer while a request holds one row half-way through users; when the backfill waits for that row,
    count from another session the rows it has already committed and the rows it holds locked."""
    from alembic import command

    from .. import db, migrations
    from ..errors import WorkbookError
    from ..locks import wait_until_blocked

    _copies(wb, "ALTER TABLE users ADD COLUMN email_domain text")
    rows = _sql(wb, f"SELECT count(*) FROM {SCHEMA}.users")
    middle = _sql(wb, f"SELECT id FROM {SCHEMA}.users ORDER BY id OFFSET {rows // 2} LIMIT 1")
    libpq = wb.url.replace("+psycopg", "")
    locked, committed = rows, 0
    with tempfile.TemporaryDirectory() as folder:
        cfg = _config(wb, upgrade, folder)
        with db.connect(libpq, autocommit=False, application_name=wb.app_name) as request, \
                db.connect(libpq, application_name=wb.app_name) as observer:
            since = migrations.server_now(observer)
            request.execute(f"UPDATE {SCHEMA}.users SET name = name WHERE id = %s", [middle])  # one row, held
            run = migrations.in_background(command.upgrade, cfg, "ex1")
            try:
                pid = migrations.session_pid(observer, cfg.attributes["application_name"], 5, since)
                wait_until_blocked(observer, pid, 5)  # the backfill reached the held row and waits for it
                unlocked = observer.execute(f"SELECT count(*) FROM (SELECT FROM {SCHEMA}.users "
                                            "FOR UPDATE SKIP LOCKED) t").fetchone()[0]
                locked = rows - 1 - unlocked  # rows the backfill's open transaction holds (the held row aside)
                committed = observer.execute(f"SELECT count(*) FROM {SCHEMA}.users "
                                             "WHERE email_domain IS NOT NULL").fetchone()[0]
            except WorkbookError:  # it never waited on the row: it failed, or never updated it
                pass
            finally:
                request.rollback()
            run.result(timeout=30)
    wrong = _sql(wb, f"SELECT count(*) FROM {SCHEMA}.users "
                     "WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)")
    return {"every row holds its email's domain": wrong == 0,
            "no transaction held more than a tenth of the rows locked at once": locked <= max(1, rows // 10),
            "other sessions saw rows filled in while it ran (batches committed)": committed > 0}


FK_ADD = re.compile(r"ADD\s+(CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY[^;]*", re.I)
VALIDATE = re.compile(r"VALIDATE\s+CONSTRAINT", re.I)
COMMIT = re.compile(r"^\s*COMMIT\s*;", re.I | re.M)


def fk_steps(sql: str) -> dict[str, bool]:
    """From a revision's offline SQL: is every foreign key added NOT VALID, and validated after a COMMIT?"""
    adds = list(FK_ADD.finditer(sql))
    not_valid = bool(adds) and all(re.search(r"\bNOT\s+VALID\b", a.group(0), re.I) for a in adds)
    validate = VALIDATE.search(sql, adds[-1].end()) if adds else None
    separate = validate is not None and COMMIT.search(sql, adds[-1].end(), validate.start()) is not None
    return {"the key is added NOT VALID (no scan under the ADD's lock)": not_valid,
            "VALIDATE runs after the ADD's transaction committed": separate}


def fk_verdict(wb: Workbook, upgrade: Callable[[], None]) -> dict[str, Any]:
    """Read the answer's offline SQL (NOT VALID, then VALIDATE in a later transaction), then run it with its
    transaction held open at its end and probe a write to posts and to users meanwhile."""
    from alembic import command

    from .. import migrations

    _copies(wb)
    hold = migrations.Hold(timeout=20)
    with tempfile.TemporaryDirectory() as folder:
        steps = fk_steps(migrations.offline_sql(_config(wb, upgrade, folder), "ex1"))
        run = migrations.in_background(command.upgrade, _config(wb, upgrade, folder, on_version_apply=[hold]), "ex1")
        try:
            if not hold.reached.wait(20):
                run.result(timeout=1)  # the answer raised before the end: report that
            libpq = wb.url.replace("+psycopg", "")
            blocked = migrations.probe(libpq, wb.app_name, f"UPDATE {SCHEMA}.posts SET id = id WHERE false; "
                                                            f"UPDATE {SCHEMA}.users SET id = id WHERE false")
        finally:
            hold.release()
        run.result(timeout=30)
    validated = _sql(wb, f"SELECT coalesce(bool_and(convalidated), false) FROM pg_constraint WHERE contype = 'f' "
                         f"AND conrelid = '{SCHEMA}.posts'::regclass AND confrelid = '{SCHEMA}.users'::regclass")
    return {"posts.user_id references users, validated": validated, **steps,
            "writes waited at the revision's end": blocked}


def cleanup(wb: Workbook) -> None:
    """Drop the exercises' schema."""
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def index_fixed() -> None:
    """Reference for q1."""
    from alembic import op

    with op.get_context().autocommit_block():
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def backfill_fixed() -> None:
    """Reference for q2."""
    import sqlalchemy as sa
    from alembic import op

    conn = op.get_bind()
    with op.get_context().autocommit_block():
        max_id = conn.execute(sa.text("SELECT max(id) FROM users")).scalar() or 0
        for lo in range(0, max_id, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": lo, "hi": lo + 5})


def fk_fixed() -> None:
    """Reference for q3."""
    from alembic import op

    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 05, bound to this notebook's database."""
    q1 = Exercise(
        name="q1",
        question="This revision indexes posts.user_id the way the original sheet did. Fix upgrade() so that "
                 "squawk finds nothing, the index ends up valid, and a write arriving during the build goes "
                 "through. Then q1.check(upgrade).",
        reference=lambda: index_verdict(wb, index_fixed),
        hint_text="§1: which form of CREATE INDEX leaves writers alone, and where can Alembic run it?",
        solution_code="def upgrade():\n"
                      "    with op.get_context().autocommit_block():\n"
                      "        op.create_index(\"ix_posts_user_id\", \"posts\", [\"user_id\"],\n"
                      "                        postgresql_concurrently=True, if_not_exists=True)\n\nq1.check(upgrade)",
        evaluate=lambda upgrade: index_verdict(wb, upgrade),
        starter=INDEX_STARTER,
    )
    q2 = Exercise(
        name="q2",
        question="users has a new, empty column email_domain. Rewrite this backfill so that each row gets "
                 "split_part(email, '@', 2) and no transaction ever holds more than a tenth of the rows locked "
                 "(each batch commits before the next begins). "
                 "Then q2.check(upgrade).",
        reference=lambda: backfill_verdict(wb, backfill_fixed),
        hint_text="§6: batches of ids (keyset ranges), and something that makes each UPDATE commit on its own "
                  "(a savepoint does not: its row locks last until the whole transaction ends). The checker "
                  "holds one row half-way and, while your backfill waits for it, counts the rows it holds locked.",
        solution_code="def upgrade():\n"
                      "    conn = op.get_bind()\n"
                      "    with op.get_context().autocommit_block():\n"
                      "        max_id = conn.execute(sa.text(\"SELECT max(id) FROM users\")).scalar() or 0\n"
                      "        for lo in range(0, max_id, 5):\n"
                      "            conn.execute(sa.text(\"UPDATE users SET email_domain = split_part(email, '@', 2) \"\n"
                      "                                 \"WHERE id > :lo AND id <= :hi\"), {\"lo\": lo, \"hi\": lo + 5})"
                      "\n\nq2.check(upgrade)",
        evaluate=lambda upgrade: backfill_verdict(wb, upgrade),
        starter=BACKFILL_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="Add the foreign key posts.user_id → users.id in one revision so that it ends up validated "
                 "and writes to posts and users never wait on the migration's scan. The checker reads the revision's "
                 "offline SQL (which statement scans, in which transaction), then runs it with its transaction "
                 "held open at its end (as a long scan would) and tries a write meanwhile. "
                 "Then q3.check(upgrade).",
        reference=lambda: fk_verdict(wb, fk_fixed),
        hint_text="§5: NOT VALID first; VALIDATE takes a weaker lock, but only if the stronger one from the "
                  "first step is no longer held: how does a revision commit half-way?",
        solution_code="def upgrade():\n"
                      "    op.create_foreign_key(\"posts_user_id_fkey\", \"posts\", \"users\", [\"user_id\"], [\"id\"],\n"
                      "                          postgresql_not_valid=True)\n"
                      "    with op.get_context().autocommit_block():\n"
                      "        op.execute(\"ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey\")\n\n"
                      "q3.check(upgrade)",
        evaluate=lambda upgrade: fk_verdict(wb, upgrade),
        starter=FK_STARTER,
    )
    return q1, q2, q3
