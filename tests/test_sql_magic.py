"""%sql (ipython-sql) works with the pinned prettytable: 3.12+ breaks its first query with KeyError: 'DEFAULT'."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

from workbook_utils import urls


def test_prettytable_is_pinned_below_3_12():
    assert Version(version("prettytable")) < Version("3.12")


def test_sql_magic_runs_a_query():
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "sql")
    shell.run_line_magic("sql", urls.database_url("tiny"))
    result = shell.run_cell_magic("sql", "", "SELECT count(*) AS n FROM users")
    assert result.DataFrame()["n"][0] == 100
    assert "| n" in str(result) or "n" in result._repr_html_()
    from sql.connection import Connection

    for conn in Connection.connections.values():
        conn.internal_connection.close()
        conn.internal_connection.engine.dispose()
