"""Every query of a server-wide view keeps to the learner's own database and role (a room on one shared server).

pg_stat_activity and pg_locks list every session of the server, pg_stat_statements the statements of every
database; in a workshop room other learners run the same notebooks under the same application_names. So every
query of them in a notebook or a helper names this database (`current_database()`), and the role where there is one
(`usename`, `userid`). The few reads that are server-wide on purpose are listed below, each with its reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from workbook_utils.config import project_root
from workbook_utils.notebook_files import notebook_paths

VIEW = re.compile(r"\b(?:FROM|JOIN)\s+(pg_stat_activity|pg_locks|pg_stat_statements)\b", re.I)
NEEDS = {"pg_stat_activity": ("current_database()", "usename"), "pg_locks": ("current_database()",),
         "pg_stat_statements": ("current_database()", "userid")}
SERVER_WIDE = {  # (file, a piece of the query): why it may read the whole server
    ("pooling.py", "count(*) FILTER (WHERE backend_type = 'client backend')"):
        "max_connections and a role's CONNECTION LIMIT count the sessions of every database",
    ("workload.py", "backend_type = 'checkpointer'"): "the server's own process, not a session",
    ("seed.py", "WHERE datname = %s AND pid <> pg_backend_pid()"): "the admin empties the database it re-creates",
}
OTHERS = {"cli.py", "urls.py", "server.py", "room.py", "learners.py", "notebook_files.py"}  # the facilitator's tools
MODULES = sorted(p for p in (project_root() / "workbook_utils").rglob("*.py") if p.name not in OTHERS)


def _constants(tree: ast.AST) -> dict[str, str]:
    """NAME = "…" (or an f-string of such names) at the top level, for resolving f"… {NAME} …"."""
    found: dict[str, str] = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if (text := _text(node.value, found)) is not None:
                found[node.targets[0].id] = text
    return found


def _text(node: ast.AST, names: dict[str, str]) -> str | None:
    """The string a literal or f-string spells, its {NAME} parts filled in from `names`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v, names) or "" if isinstance(v, ast.Constant) else
                       names.get(getattr(v.value, "id", ""), "{?}") for v in node.values)
    return None


def sql_strings(source: str, names: dict[str, str] | None = None) -> list[str]:
    """Every string literal of this Python source that queries a server-wide view (f-strings filled in, docstrings
    left out)."""
    tree = ast.parse(source)
    names = {**(names or {}), **_constants(tree)}
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    parts |= {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}  # docstrings: prose
    texts = [_text(node, names) for node in ast.walk(tree) if id(node) not in parts]
    return [t for t in texts if t and VIEW.search(t)]


def unscoped(place: str, strings: list[str]) -> list[str]:
    """The queries among `strings` that miss what their view needs and are not listed as server-wide."""
    wrong = []
    for sql in strings:
        if any(file == place and piece in sql for file, piece in SERVER_WIDE):
            continue
        if re.search(r"\bpid\s*=\s*pg_backend_pid\(\)", sql):
            continue  # this very session's own rows: nobody else's
        missing = {need for view in VIEW.findall(sql) for need in NEEDS[view.lower()] if need not in sql}
        if missing:
            wrong.append(f"{place}: {' '.join(sql.split())[:120]} … (no {', '.join(sorted(missing))})")
    return wrong


def notebook_sql(path: Path) -> list[str]:
    """The queries of a notebook's code cells, %sql and %%sql included (IPython turns them into Python first)."""
    cells = [TransformerManager().transform_cell(c.source) for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code"]
    names = {k: v for cell in cells for k, v in _constants(ast.parse(cell)).items()}
    return [sql for cell in cells for sql in sql_strings(cell, names)]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_a_notebooks_queries_of_server_wide_views_keep_to_its_database_and_role(path):
    assert unscoped(path.name, notebook_sql(path)) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(project_root())))
def test_a_helpers_queries_of_server_wide_views_keep_to_its_database_and_role(path):
    assert unscoped(path.name, sql_strings(path.read_text())) == []


def test_the_check_finds_queries_in_every_form_and_flags_the_unscoped_ones():
    """The forms used above: plain, implicitly joined, an f-string of a constant, %%sql; scoped or not."""
    source = '''
OWN = "datname = current_database() AND usename = current_user"
A = f"SELECT pid FROM pg_stat_activity WHERE {OWN}"
B = ("SELECT count(*) FROM pg_stat_activity "
     "WHERE application_name = 'x'")
get_ipython().run_cell_magic("sql", "", "SELECT * FROM pg_locks l WHERE l.pid = 1\\n")
C = "SELECT calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
D = "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid()"
'''
    found = sql_strings(source)
    assert len(found) == 5 and found[0] == "SELECT pid FROM pg_stat_activity WHERE " + \
        "datname = current_database() AND usename = current_user"
    assert sorted(w.split(" … ")[1] for w in unscoped("x.py", found)) == [
        "(no current_database())", "(no current_database(), usename)", "(no userid)"]
    assert len(notebook_sql(next(p for p in notebook_paths() if p.name.startswith("01_")))) >= 4  # %%sql among them
