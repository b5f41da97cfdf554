"""Every notebook, executed for real at scale tiny: two runs prove everything the notebook tests promise.

1. On the embedded server, top to bottom on a fresh kernel with nothing skipped, then every lesson cell run
   again in the same kernel (a learner going back); no session is left behind; the HTML report carries the charts.
2. Through DATABASE_URL as an ordinary role, as on a managed server: only demos that need more rights skip.
"""

from __future__ import annotations

import re
import time

import pytest

from workbook_utils import db, urls
from workbook_utils.notebook_files import execute, notebook_paths, to_html

SKIPPED = "Skipped:"  # how a demo that needs more rights than the role has says it did not run


def _open_sessions(app_name: str) -> int:
    with db.connect(urls.admin_url()) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                            [f"{app_name}%"]).fetchone()[0]  # also "workbook-nb01 sessions" and the like


def _outputs(nb) -> str:
    return "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)


def test_there_are_notebooks():
    assert notebook_paths(), "notebooks/ holds no NN_*.ipynb"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_reruns_its_lessons_and_cleans_up(path, tmp_path):
    executed = execute(path, timeout=600, rerun=True)
    assert SKIPPED not in _outputs(executed), "on the embedded server every demo runs"
    app_name = f"workbook-nb{path.name[:2]}"
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
    admin_url = urls.admin_url()  # before DATABASE_URL is set: from then on admin_url() would mean nb_plain

    def reset(create: bool) -> None:
        with db.connect(admin_url) as admin:
            admin.execute("DROP DATABASE IF EXISTS nb_plain WITH (FORCE)")
            admin.execute("DROP ROLE IF EXISTS nb_plain")
            if create:
                admin.execute("CREATE ROLE nb_plain LOGIN")
                admin.execute("CREATE DATABASE nb_plain OWNER nb_plain")

    reset(create=True)
    url = urls.with_database(urls.libpq_url("tiny").replace(f"{urls.APP_ROLE}@", "nb_plain@"), "nb_plain")
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    reset(create=False)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_on_a_database_url_as_an_ordinary_role(path, plain_database_url):
    """Any PostgreSQL 14+ via DATABASE_URL: demos that need more rights skip with a sentence instead of failing."""
    execute(path, timeout=600)
