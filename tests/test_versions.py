"""PostgreSQL 15 and newer: a demo of a newer feature asks wb.needs(feature), and NEWER names each once."""

from __future__ import annotations

import re

import nbformat

from workbook_utils.doctor import version_line
from workbook_utils.notebook_files import notebook_paths
from workbook_utils.workbook import NEWER

ASKED = re.compile(r"wb\.needs\(\"([^\"]+)\"\)")


def test_every_feature_a_notebook_asks_for_is_listed_and_every_listed_one_is_asked_for():
    asked = {name for path in notebook_paths() for cell in nbformat.read(path, as_version=4).cells
             if cell.cell_type == "code" for name in ASKED.findall(cell.source)}
    assert asked == set(NEWER)


def test_doctor_names_the_demos_an_older_server_skips():
    assert version_line("15.18", 150018) == (
        "PostgreSQL 15.18 (15 or newer needed); demos that need a newer one skip: last_idx_scan (16), "
        "EXPLAIN (GENERIC_PLAN) (16), transaction_timeout (17), NOT NULL … NOT VALID (18), RETURNING old (18)")
    assert version_line("17.2", 170002).endswith("skip: NOT NULL … NOT VALID (18), RETURNING old (18)")
    assert version_line("18.1", 180001) == "PostgreSQL 18.1 (15 or newer needed)"
