"""%sql (ipython-sql) works with the pinned prettytable: 3.12+ breaks its first query with KeyError: 'DEFAULT'."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

from workbook_utils import urls


def test_prettytable_is_pinned_below_3_12():
    assert Version(version("prettytable")) < Version("3.12")


def _shell():
    """IPython's test shell with ipython-sql loaded (started once per process)."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "sql")
    return shell


def test_sql_magic_runs_a_query():
    shell = _shell()
    shell.run_line_magic("sql", urls.database_url("tiny"))
    result = shell.run_cell_magic("sql", "", "SELECT count(*) AS n FROM users")
    assert result.DataFrame()["n"][0] == 100
    assert "| n" in str(result) or "n" in result._repr_html_()
    from sql.connection import Connection

    for conn in Connection.connections.values():
        conn.internal_connection.invalidate()  # no session left behind; the connection reopens when used again


def test_sql_magic_works_again_after_the_notebook_closed_its_sessions():
    from workbook_utils import setup

    shell = _shell()
    wb = setup("99")
    shell.run_line_magic("sql", wb.url)
    assert shell.run_cell_magic("sql", "", "SELECT 1 AS one").DataFrame()["one"][0] == 1
    wb.close()  # the notebook's last cell
    assert shell.run_cell_magic("sql", "", "SELECT 2 AS two").DataFrame()["two"][0] == 2  # a cell run afterwards
    wb.close()
