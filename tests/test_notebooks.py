"""Every notebook runs top to bottom on a fresh kernel at scale tiny, twice in a row, and leaves no session behind."""

from __future__ import annotations

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
