"""Notebook 05's Alembic environment and helpers, against the real server: every revision round-trips."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from sqlalchemy import exc

from workbook_utils import db, locks, migrations, urls
from workbook_utils.errors import WorkbookError

from .elsewhere import another_role

SCHEMA = "t05_migrations"
EXPECTED_LINT = {"u01": ["require-concurrent-index-creation"],
                 "u01c": ["prefer-robust-stmts", "ban-concurrent-index-creation-in-transaction"],
                 "u03": ["adding-field-with-default"],
                 "u04": ["constraint-missing-not-valid", "adding-foreign-key-constraint"],
                 "u07": [],  # one UPDATE of every row: squawk cannot see it, the workload can (notebook §6)
                 "u08": ["adding-not-nullable-field"],
                 "0009": ["ban-drop-constraint"]}  # dropping the helper CHECK once NOT NULL holds: accepted


@pytest.fixture
def schema(seeded):
    """Fresh copies of users and posts in a schema of their own (as the notebook's scratch copy)."""
    tables = ("users", "posts")
    with db.connect(seeded) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        for t in tables:
            conn.execute(f"CREATE TABLE {SCHEMA}.{t} (LIKE public.{t} INCLUDING ALL); "
                         f"INSERT INTO {SCHEMA}.{t} SELECT * FROM public.{t}")
    yield SCHEMA
    with db.connect(seeded) as conn:
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def _cfg(unsafe: bool = False, **attributes):
    versions = [migrations.SAFE, migrations.UNSAFE] if unsafe else [migrations.SAFE]
    return migrations.config(urls.database_url("tiny"), SCHEMA, versions, backfill_batch=30, **attributes)


def test_every_safe_revision_upgrades_downgrades_and_upgrades_again_and_head_matches_the_metadata(schema):
    cfg = _cfg()
    for revision in migrations.revisions(cfg):
        command.upgrade(cfg, revision)
        command.downgrade(cfg, migrations.down_revision(cfg, revision) or "base")
        command.upgrade(cfg, revision)
        assert migrations.current(cfg) == revision
    command.check(cfg)  # raises if the head state differs from env.py's target_metadata
    with db.connect() as conn:
        nulls = conn.execute(f"SELECT count(*) FROM {SCHEMA}.users WHERE email_domain IS NULL").fetchone()[0]
        assert nulls == 0
        command.downgrade(cfg, "base")
        columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
                               "AND table_name <> 'alembic_version'",
                               [SCHEMA]).fetchone()[0]
    assert columns == 13  # the copy's columns again: every downgrade undid its upgrade


def test_every_unsafe_revision_round_trips_from_the_safe_revision_it_replaces(schema):
    cfg = _cfg(unsafe=True)
    unsafe = [r for r in migrations.revisions(cfg) if r.startswith("u") and r != "u01c"]
    assert unsafe == sorted(EXPECTED_LINT.keys() - {"0009", "u01c"}, key=migrations.revisions(cfg).index)
    for revision in unsafe:
        base = migrations.down_revision(cfg, revision) or "base"
        command.downgrade(cfg, "base")
        if base != "base":
            command.upgrade(cfg, base)
        for step in (revision, base, revision, base):
            (command.upgrade if step == revision else command.downgrade)(cfg, step)
        assert migrations.current(cfg) == (None if base == "base" else base)


def test_concurrently_inside_alembics_transaction_fails_and_leaves_nothing(schema):
    cfg = _cfg(unsafe=True)
    with pytest.raises(exc.InternalError) as raised:
        command.upgrade(cfg, "u01c")
    assert isinstance(raised.value.orig, psycopg.errors.ActiveSqlTransaction)
    assert migrations.current(cfg) is None
    with db.connect() as conn:
        assert conn.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.ix_posts_user_id"]).fetchone() == (None,)


def test_offline_sql_sets_the_session_first_and_squawk_flags_exactly_the_dangerous_revisions(schema):
    cfg = _cfg(unsafe=True)
    sql = migrations.offline_sql(cfg, "0002")
    assert sql.index(f"SET search_path TO {SCHEMA}") < sql.index("SET lock_timeout = '2s'") < sql.index("BEGIN")
    assert sql.count("-- Running upgrade") == 1 and "-- Running upgrade 0001 -> 0002" in sql  # this revision only
    assert "CREATE INDEX CONCURRENTLY" in migrations.offline_sql(cfg, "0001").split("COMMIT;")[1]
    found = {r: migrations.squawk(migrations.offline_sql(cfg, r)) for r in migrations.revisions(cfg)}
    assert {r: rules for r, rules in found.items() if rules or r in EXPECTED_LINT} == EXPECTED_LINT
    assert "SET lock_timeout" not in migrations.offline_sql(_cfg(lock_timeout=None), "0002")
    assert migrations.squawk("SET lock_timeout = '1s';\nCREATE INDEX ix ON posts (user_id);")[-1:] == \
        ["require-concurrent-index-creation"]  # the helper reports what squawk finds, not a fixed list


def test_a_hold_keeps_the_revisions_transaction_open_so_writers_wait_until_release(schema):
    hold = migrations.Hold(timeout=20)
    cfg = _cfg(unsafe=True, on_version_apply=[hold], application_name="t05-migration")
    upgrade = migrations.in_background(command.upgrade, cfg, "u01")
    assert hold.reached.wait(20)
    with db.connect() as observer, db.connect(autocommit=False) as writer:
        pid = migrations.session_pid(observer, "t05-migration")
        writer.execute("SET LOCAL lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            writer.execute(f"UPDATE {SCHEMA}.posts SET title = title WHERE id = 1")
        assert "posts: ShareLock" in ", ".join(f"{r.relation}: {r.mode}"
                                               for r in locks.locks_held(observer, pid).itertuples())
        writer.rollback()
        hold.release()
        upgrade.result(timeout=20)
        writer.execute(f"UPDATE {SCHEMA}.posts SET title = title WHERE id = 1")  # goes through now
        writer.rollback()


def test_session_pid_finds_the_migration_of_this_database_and_role_only(seeded, scratch_db):
    """Other learners' migrations carry the same application_name; the newest of them must not be taken for ours."""
    with db.connect(seeded) as observer, another_role(seeded) as stranger:
        since = migrations.server_now(observer)
        with db.connect(scratch_db, application_name="t05-scope"), db.connect(stranger, application_name="t05-scope"):
            with pytest.raises(WorkbookError, match="no session named t05-scope"):
                migrations.session_pid(observer, "t05-scope", timeout=0.2, since=since)
        with db.connect(seeded, application_name="t05-scope") as ours, \
                db.connect(scratch_db, application_name="t05-scope"), db.connect(stranger, application_name="t05-scope"):
            assert migrations.session_pid(observer, "t05-scope", since=since) == ours.info.backend_pid  # not the newest


def test_the_ledger_measures_locks_rewrites_and_what_they_block(schema):
    url = urls.libpq_url("tiny")
    posts, users = f"{SCHEMA}.posts", f"{SCHEMA}.users"
    plain = migrations.ledger_row(url, "t05", f"CREATE INDEX ix_l ON {posts} (user_id)", [posts])
    assert plain == {"statement": f"CREATE INDEX ix_l ON {posts} (user_id)", "locks": "posts: ShareLock",
                     "blocks reads": False, "blocks writes": True, "rewrites": False}
    cic = migrations.ledger_row(url, "t05", f"CREATE INDEX CONCURRENTLY ix_l ON {posts} (user_id)", [posts],
                                concurrently=True)
    assert (cic["locks"], cic["blocks reads"], cic["blocks writes"]) == ("posts: ShareUpdateExclusiveLock",
                                                                         False, False)
    volatile = migrations.ledger_row(url, "t05", f"ALTER TABLE {users} ADD v timestamptz DEFAULT clock_timestamp()",
                                     [users])
    constant = migrations.ledger_row(url, "t05", f"ALTER TABLE {users} ADD v bool NOT NULL DEFAULT false", [users])
    assert (volatile["rewrites"], constant["rewrites"]) == (True, False)
    assert constant["blocks reads"] and "AccessExclusiveLock" in constant["locks"]
    with db.connect() as conn:  # the sandbox rolled back; only the concurrent build is real
        assert conn.execute(f"SELECT count(*) FROM pg_attribute WHERE attrelid = '{users}'::regclass "
                            "AND attname = 'v'").fetchone() == (0,)
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.ix_l"]).fetchone() == (True,)


def test_a_percent_sign_in_the_url_needs_no_escaping():
    cfg = migrations.config("postgresql+psycopg://u:p%40ss@localhost/db", "s")
    assert cfg.attributes["url"].endswith("p%40ss@localhost/db")
    assert "SET search_path TO s" in migrations.offline_sql(cfg, "0002")
