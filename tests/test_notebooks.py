"""Every notebook runs top to bottom on a fresh kernel at scale tiny, twice in a row, and leaves no session behind."""

from __future__ import annotations

import re
import time

import pytest

from workbook_utils import db
from workbook_utils.notebooks import execute, notebook_paths, to_html


def _open_sessions(app_name: str) -> int:
    with db.connect(db.admin_url()) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            [app_name]).fetchone()[0]


def test_there_are_notebooks():
    assert notebook_paths(), "notebooks/ holds no NN_*.ipynb"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_twice_and_cleans_up(path, tmp_path):
    app_name = f"workbook-nb{path.name[:2]}"
    for _ in range(2):  # the second run proves a notebook does not depend on a clean slate
        executed = execute(path, timeout=600)
        deadline = time.time() + 5
        while _open_sessions(app_name) and time.time() < deadline:
            time.sleep(0.1)
        assert _open_sessions(app_name) == 0, f"{path.name} left sessions in pg_stat_activity"
    html = to_html(executed, tmp_path / f"{path.stem}.html").read_text()  # what `workbook run` writes
    assert "data:image/png;base64" in html, "the report carries the notebook's charts"
    assert not re.search(r'href="\d\d_\w+\.ipynb"', html), "links between rendered pages point to .html"


@pytest.fixture
def plain_database_url(monkeypatch) -> str:
    """DATABASE_URL of an empty database owned by an ordinary role (no CREATEROLE), as on a managed server."""
    admin_url = db.admin_url()  # before DATABASE_URL is set: from then on admin_url() would mean nb_plain

    def reset(create: bool) -> None:
        with db.connect(admin_url) as admin:
            admin.execute("DROP DATABASE IF EXISTS nb_plain WITH (FORCE)")
            admin.execute("DROP ROLE IF EXISTS nb_plain")
            if create:
                admin.execute("CREATE ROLE nb_plain LOGIN")
                admin.execute("CREATE DATABASE nb_plain OWNER nb_plain")

    reset(create=True)
    url = db.libpq_url("tiny").replace(f"{db.APP_ROLE}@", "nb_plain@").rsplit("/", 1)[0] + "/nb_plain"
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    reset(create=False)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_on_a_database_url_as_an_ordinary_role(path, plain_database_url):
    """Any PostgreSQL 14+ via DATABASE_URL: demos that need more rights skip with a sentence instead of failing."""
    execute(path, timeout=600)
