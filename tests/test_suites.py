"""suites.run: writes the files, runs pytest in a subprocess against the real server, reports every test's outcome."""

from __future__ import annotations

import re

import pytest

from workbook_utils import db, suites
from workbook_utils.errors import WorkbookError

CONFTEST = '''
import os

import pytest
from sqlalchemy import create_engine, text

@pytest.fixture(scope="session")
def conn():
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as conn:
        yield conn
    engine.dispose()
'''
TESTS = '''
from sqlalchemy import text

def test_session_settings(conn):
    row = conn.execute(text("SELECT current_setting('application_name'), (current_schemas(false))[1], "
                            "current_setting('lock_timeout'), current_setting('statement_timeout')")).one()
    assert tuple(row) == ("suite-test", "public", "5s", "30s")

def test_fails(conn):
    assert conn.execute(text("SELECT 41")).scalar() == 42
'''


def test_run_reports_each_test_with_its_message_and_names_its_sessions():
    report = suites.run({"conftest.py": CONFTEST, "test_b.py": TESTS, "test_a.py": "def test_ok():\n    pass\n"},
                        db.database_url(), "suite-test", "public")
    assert report.outcomes() == {"test_a::test_ok": "passed", "test_b::test_session_settings": "passed",
                                 "test_b::test_fails": "failed"}   # sorted modules, tests in file order
    assert report.count("failed") == 1 and report.count("passed") == 2
    assert report.message("test_fails") == "AssertionError: assert 41 == 42"
    assert "1 failed, 2 passed" in re.sub(r"\x1b\[[0-9;]*m", "", report.output)   # pytest's summary, colours aside
    with pytest.raises(WorkbookError, match="no test named like"):
        report.message("test_missing")


def test_run_keeps_the_order_it_is_given_reads_recorded_properties_and_reports_a_module_that_cannot_be_collected():
    recording = "def test_b(request):\n    request.node.user_properties.append(('seen', 'yes'))\n"
    report = suites.run({"test_b.py": recording, "test_a.py": "def test_a():\n    pass\n"},
                        db.database_url(), "suite-test", "public", order=["test_b.py", "test_a.py"])
    assert list(report.outcomes()) == ["test_b::test_b", "test_a::test_a"]
    assert report.properties == {"test_b::test_b": {"seen": "yes"}, "test_a::test_a": {}}   # what fixtures recorded
    broken = suites.run({"test_x.py": "def test_x(:\n"}, db.database_url(), "suite-test", "public")
    assert broken.outcomes() == {"::test_x": "error"} and broken.message("test_x") == "collection failure"
