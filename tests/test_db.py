"""URLs, friendly connection errors, and the marker that keeps seed/reset away from other people's data."""

from __future__ import annotations

import socket

import pytest

from workbook_utils import db, marker, provision, seed, server, urls
from workbook_utils.errors import WorkbookError

from .conftest import fingerprint
from .elsewhere import alive, another_role


def test_urls_name_the_embedded_server_and_the_psycopg_driver():
    port = server.port()
    assert urls.libpq_url("tiny") == f"postgresql://workbook@127.0.0.1:{port}/workbook_tiny"
    assert urls.database_url("small") == f"postgresql+psycopg://workbook@127.0.0.1:{port}/workbook"


def test_database_url_env_wins_and_driver_suffix_is_normalised(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:p@db.example:5432/app")
    assert urls.libpq_url() == "postgresql://u:p@db.example:5432/app"
    assert urls.database_url() == "postgresql+psycopg://u:p@db.example:5432/app"
    assert urls.admin_url() == "postgresql://u:p@db.example:5432/postgres"


def test_non_postgresql_url_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/app")
    with pytest.raises(WorkbookError, match="must be a PostgreSQL URL") as info:
        urls.libpq_url()
    assert "\n" not in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_host_and_port():
    port = _closed_port()
    with pytest.raises(WorkbookError) as info:
        db.connect(f"postgresql://workbook@127.0.0.1:{port}/workbook")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower() and "\n" not in message


def test_missing_database_is_named():
    with pytest.raises(WorkbookError, match='database "no_such_db" does not exist'):
        db.connect(urls.with_database(urls.libpq_url("tiny"), "no_such_db"))


def test_version_is_checked():
    with db.connect() as conn:
        assert int(db.check_version(conn).split(".")[0]) >= 15


def test_a_server_older_than_15_is_refused_in_one_line():
    refused = db.too_old(140013, "14.13")
    assert refused == ("PostgreSQL 14.13 is too old: the workbook needs PostgreSQL 15 or newer "
                       "(14 reached end of life in November 2026).")
    assert db.too_old(150000, "15.0") is None and db.too_old(180001, "18.1") is None


def test_a_demo_of_a_newer_feature_says_which_version_it_needs(capsys):
    from workbook_utils.workbook import Workbook

    wb = Workbook(number="99", scale="tiny", url="postgresql+psycopg://x@127.0.0.1/x", version="15.18", version_num=150018)
    assert not wb.needs("last_idx_scan")
    assert capsys.readouterr().out == "Skipped: last_idx_scan needs PostgreSQL 16 (this server is 15.18).\n"
    wb.version_num = 160000
    assert wb.needs("last_idx_scan") and capsys.readouterr().out == ""


def test_seed_refuses_a_database_with_foreign_tables_and_changes_nothing(scratch_db, monkeypatch):
    with db.connect(scratch_db) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY); INSERT INTO invoices VALUES (1), (2)")
    monkeypatch.setenv("DATABASE_URL", scratch_db)
    with pytest.raises(WorkbookError, match=r"Refusing .*public\.invoices.*Nothing was changed"):
        seed.seed("tiny", progress=lambda _: None)
    with pytest.raises(WorkbookError, match="did not create"):
        seed.reset("tiny", progress=lambda _: None)
    with db.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 2
        assert conn.execute("SELECT to_regclass('_workbook.meta')").fetchone()[0] is None


def test_seed_claims_an_empty_database_given_by_database_url(scratch_db, seeded, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", scratch_db)
    seed.seed("tiny", progress=lambda _: None)
    with db.connect(scratch_db) as conn:
        assert marker.seeded_scale(conn) == "tiny"
    assert fingerprint(scratch_db) == fingerprint(seeded)  # same rows as the embedded seed: deterministic
    seed.seed("tiny", progress=lambda _: None)             # a marked database may be seeded again


def test_database_url_mode_never_touches_the_embedded_databases(scratch_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", scratch_db)
    provision.ensure_database("large")  # would create workbook_large on the embedded server if it ignored DATABASE_URL
    with db.connect(urls.admin_url()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'workbook_large'").fetchone() is None


def test_setup_in_a_notebook_fails_in_one_line_not_a_traceback(monkeypatch):
    from workbook_utils import setup

    monkeypatch.setenv("DATABASE_URL", f"postgresql://app@127.0.0.1:{_closed_port()}/app")
    with pytest.raises(WorkbookError) as info:
        setup("00")
    rendered = info.value._render_traceback_()  # what IPython shows instead of the traceback
    assert len(rendered) == 1 and "Cannot reach PostgreSQL" in rendered[0]


def test_setup_gives_up_clearly_when_another_session_holds_its_schema():
    from workbook_utils import setup

    setup("99")
    with db.connect(urls.libpq_url("tiny"), autocommit=False) as holder:
        holder.execute("CREATE TABLE nb99.held (id int)")  # uncommitted: holds a lock on schema nb99
        with pytest.raises(WorkbookError, match="Waited 5s for a lock: .*nb99"):
            setup("99")
        holder.rollback()
    with db.connect(urls.libpq_url("tiny")) as conn:
        conn.execute("DROP SCHEMA nb99 CASCADE")


def test_scratch_copy_holds_the_same_rows_with_keys_and_asked_indexes():
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from workbook_utils import setup
    from workbook_utils.models import Post

    wb = setup("99")
    try:
        engine = wb.scratch_copy(["posts"], indexes=["posts(user_id)"])
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Post)) == wb.query(
                "SELECT count(*) AS n FROM public.posts")["n"][0]
        indexes = wb.query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'nb99' ORDER BY 1")["indexdef"].tolist()
        assert len(indexes) == 2 and "(id)" in indexes[0] + indexes[1] and "(user_id)" in indexes[0] + indexes[1]
        with engine.begin() as conn:  # the copy is the notebook's to change; the dataset stays as it was
            conn.execute(Post.__table__.delete())
        assert wb.query("SELECT count(*) AS n FROM public.posts")["n"][0] > 0
    finally:
        wb.close()
        with db.connect(urls.libpq_url()) as conn:
            conn.execute("DROP SCHEMA nb99 CASCADE")


def test_wrong_password_is_one_line_naming_the_place_and_what_to_check(monkeypatch):
    """A pg_hba.conf line that asks one role for a password, as a managed server does for all of them."""
    hba = server.pgdata() / "pg_hba.conf"
    original = hba.read_text()
    with db.connect(urls.admin_url()) as admin:
        admin.execute("DROP ROLE IF EXISTS pw_check")
        admin.execute("CREATE ROLE pw_check LOGIN PASSWORD 'right-one'")
        try:
            hba.write_text("host all pw_check 127.0.0.1/32 scram-sha-256\n" + original)
            admin.execute("SELECT pg_reload_conf()")
            port = server.status().port
            url = f"postgresql://pw_check:wrong-one@127.0.0.1:{port}/postgres"
            monkeypatch.setenv("DATABASE_URL", url)
            with pytest.raises(WorkbookError) as info:
                db.connect(url)
            message = str(info.value)
            assert f"127.0.0.1:{port}/postgres" in message and "\n" not in message and "wrong-one" not in message
            assert 'password authentication failed for user "pw_check"' in message
            assert "Check the user and password in DATABASE_URL" in message
            db.connect(url.replace("wrong-one", "right-one")).close()  # the right password gets in: the check is real
        finally:
            hba.write_text(original)
            admin.execute("SELECT pg_reload_conf()")
            admin.execute("DROP ROLE IF EXISTS pw_check")


def test_close_ends_every_session_and_cells_run_afterwards_still_work():
    """A learner runs the last cell (wb.close()), then goes back to a section or an exercise."""
    from sqlalchemy import text

    from workbook_utils import setup
    from workbook_utils.measure import capture_sql

    wb = setup("99")
    try:
        copy = wb.scratch_copy(["products"])
        with copy.connect() as conn:
            conn.execute(text("SELECT 1"))
        leaked = wb.make_engine(connect_args={"application_name": f"{wb.app_name} sessions"}).connect()
        leaked.execute(text("SELECT 1"))  # checked out and never closed, as a Session left open
        wb.close()
        with db.connect(urls.admin_url()) as admin:
            assert admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                                 [f"{wb.app_name}%"]).fetchone()[0] == 0
        with capture_sql(wb.engine) as captured, copy.connect() as conn:  # the copy still shares wb.engine's events
            assert conn.execute(text("SELECT count(*) FROM products")).scalar() > 0
        assert captured.count == 1
    finally:
        wb.close()
        with db.connect(urls.libpq_url()) as conn:
            conn.execute("DROP SCHEMA nb99 CASCADE")


def test_close_ends_this_notebooks_sessions_only_in_this_database_and_of_this_role(scratch_db):
    """In a room other learners run the same notebook: their sessions carry the same application_name."""
    from workbook_utils import setup

    wb = setup("99")
    try:
        with another_role(urls.libpq_url("tiny")) as stranger, \
                db.connect(scratch_db, application_name=wb.app_name) as elsewhere, \
                db.connect(stranger, application_name=wb.app_name) as theirs, \
                db.connect(urls.libpq_url("tiny"), application_name=f"{wb.app_name} sessions") as ours:
            wb.close()
            assert alive(elsewhere) and alive(theirs) and not alive(ours)
    finally:
        wb.close()
        with db.connect(urls.libpq_url()) as conn:
            conn.execute("DROP SCHEMA nb99 CASCADE")
