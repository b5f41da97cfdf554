"""Notebook 00's glossary holds what the notebooks use and says what PostgreSQL and psycopg really do.

- every SQLSTATE a notebook or an exercise checker names (as a code or as a psycopg class) has its row, and each row's
  condition and class are psycopg's for that code (psycopg's table is generated from PostgreSQL's errcodes.txt), and
  SQLAlchemy wraps it in the class the row says;
- every lock mode the notebooks name (`ACCESS EXCLUSIVE`, `AccessExclusiveLock`, `FOR NO KEY UPDATE` …) has its row;
- the conflicts each lock row states are the ones the server enforces: a second session asks for every mode with
  NOWAIT while the first holds each mode in turn, on a table and on a row;
- the rows' examples raise what the rows say (42P08 and 42P18's parameters, 53300 refused at connect time with no
  SQLSTATE), and the terms the notebooks lean on have their line.
"""

from __future__ import annotations

import itertools
import re
import uuid
from pathlib import Path

import nbformat
import psycopg
import pytest

from workbook_utils import db
from workbook_utils.notebook_files import notebook_paths

TABLE_MODES = ["ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE",
               "EXCLUSIVE", "ACCESS EXCLUSIVE"]
ROW_MODES = ["FOR KEY SHARE", "FOR SHARE", "FOR NO KEY UPDATE", "FOR UPDATE"]
CHECKERS = Path(__file__).resolve().parents[1] / "workbook_utils" / "exercises"


def _start() -> nbformat.NotebookNode:
    return nbformat.read(next(p for p in notebook_paths() if p.name.startswith("00_")), as_version=4)


def glossary_rows() -> dict[str, dict[str, list[str]]]:
    """Each table of 00's glossary, by its heading: first column (backticks stripped) → the other columns."""
    cells = _start().cells
    first = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Glossary"))
    tables: dict[str, dict[str, list[str]]] = {}
    for cell in cells[first:]:
        if cell.cell_type != "markdown" or not cell.source.startswith("#"):
            continue
        heading = cell.source.splitlines()[0].lstrip("# ")
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in cell.source.splitlines()
                if line.startswith("|") and not line.startswith("|---")]
        tables[heading] = {row[0].strip("`"): row[1:] for row in rows[1:]}  # rows[0]: the column titles
    return tables


def _sqlstates() -> dict[str, list[str]]:
    return next(rows for heading, rows in glossary_rows().items() if "SQLSTATE" in heading)


def used_sources() -> dict[str, str]:
    """The text of every notebook and exercise checker, by file name."""
    sources = {p.name: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in notebook_paths()}
    sources.update({p.name: p.read_text() for p in CHECKERS.glob("nb*.py")})
    return sources


def used_sqlstates() -> dict[str, set[str]]:
    """Each SQLSTATE the notebooks and checkers name, as a code or a psycopg class, and where."""
    found: dict[str, set[str]] = {}
    for name, text in used_sources().items():
        for token in re.findall(r"\b\d\d[0-9A-Z]{3}\b", text):
            if not token.endswith("000") and _lookup(token) is not None:
                found.setdefault(token, set()).add(name)
        for token in re.findall(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b", text):  # CamelCase: a psycopg class?
            error = getattr(psycopg.errors, token, None)
            if isinstance(error, type) and issubclass(error, psycopg.Error) and getattr(error, "sqlstate", None):
                found.setdefault(error.sqlstate, set()).add(name)
    return found


def _lookup(code: str) -> type | None:
    try:
        return psycopg.errors.lookup(code)
    except KeyError:
        return None


def test_every_sqlstate_the_notebooks_use_is_in_the_glossary():
    used, listed = used_sqlstates(), _sqlstates()
    missing = {code: sorted(where) for code, where in used.items() if code not in listed}
    assert not missing, f"SQLSTATEs used but not in 00's glossary: {missing}"
    assert {"40001", "40P01", "55P03", "57014", "25P03", "57P05", "53300"} <= set(used)  # the scan finds them


def test_each_sqlstate_row_names_psycopgs_condition_and_class_and_sqlalchemys_wrapper():
    from sqlalchemy import exc

    for code, (condition, wrapper, _) in _sqlstates().items():
        name, cls = re.fullmatch(r"(\w+) \(`(\w+)`\)", condition).groups()
        error = _lookup(code)
        assert error is not None and error.__name__ == cls, (code, cls, error)
        assert psycopg.errors.lookup(name.upper()) is error, (code, name)
        wrapped = exc.DBAPIError.instance("SELECT 1", None, error("from the glossary test"), psycopg.Error)
        assert type(wrapped).__name__ == wrapper.strip("`"), (code, wrapper, type(wrapped))


def test_every_lock_mode_the_notebooks_name_is_in_the_glossary():
    tables = glossary_rows()
    listed = set(itertools.chain.from_iterable(tables.values()))
    text = "\n".join(used_sources().values())
    camel = {"".join(w.capitalize() for w in mode.split()) + "Lock": mode for mode in TABLE_MODES}
    named = {camel[m] for m in re.findall(r"\b(\w+Lock)\b", text) if m in camel}
    named |= {m for m in TABLE_MODES + ROW_MODES if re.search(rf"\b{m}\b", text)}
    assert named >= {"ACCESS EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "FOR UPDATE"}  # the scan finds them
    assert named <= listed, named - listed


def _conflicts(stated: str, modes: list[str]) -> set[str]:
    """The modes a row's "conflicts with" column names ("every mode", "every mode but X", or a list)."""
    if stated.startswith("every mode but "):
        return set(modes) - {stated.removeprefix("every mode but ").strip()}
    if stated.startswith("every mode"):
        return set(modes)
    return {m.strip() for m in stated.split(",")}


def _stated(modes: list[str]) -> dict[str, set[str]]:
    rows = next(rows for rows in glossary_rows().values() if modes[0] in rows)
    return {mode: _conflicts(rows[mode][-1], modes) for mode in modes}


def _blocked(scratch_db: str, hold: str, ask: str) -> bool:
    """True if a second session cannot take `ask` (NOWAIT) while the first holds `hold`."""
    with db.connect(scratch_db) as holder, db.connect(scratch_db) as asker:
        holder.execute("BEGIN")
        holder.execute(hold)
        asker.execute("BEGIN")
        try:
            asker.execute(ask)
            return False
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            asker.execute("ROLLBACK")
            holder.execute("ROLLBACK")


@pytest.fixture
def table(scratch_db):
    with db.connect(scratch_db) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'a')")
        conn.commit()
    return scratch_db


def test_table_lock_conflicts_are_the_servers(table):
    stated = _stated(TABLE_MODES)
    for hold in TABLE_MODES:
        seen = {ask for ask in TABLE_MODES
                if _blocked(table, f"LOCK TABLE t IN {hold} MODE", f"LOCK TABLE t IN {ask} MODE NOWAIT")}
        assert seen == stated[hold], (hold, seen)


def test_row_lock_conflicts_and_the_writes_that_take_them_are_the_servers(table):
    stated = _stated(ROW_MODES)
    for hold in ROW_MODES:
        seen = {ask for ask in ROW_MODES
                if _blocked(table, f"SELECT * FROM t WHERE id = 1 {hold}", f"SELECT * FROM t WHERE id = 1 {ask} NOWAIT")}
        assert seen == stated[hold], (hold, seen)
    waits = "SET LOCAL lock_timeout = '20ms'; "  # a write has no NOWAIT: it gives up after 20 ms instead
    # "FOR KEY SHARE conflicts with FOR UPDATE only", and "DELETE and an UPDATE of a key column take FOR UPDATE":
    assert _blocked(table, "SELECT * FROM t FOR KEY SHARE", waits + "DELETE FROM t WHERE id = 1")
    assert _blocked(table, "SELECT * FROM t FOR KEY SHARE", waits + "UPDATE t SET id = 2 WHERE id = 1")
    assert not _blocked(table, "SELECT * FROM t FOR KEY SHARE", waits + "UPDATE t SET note = 'b' WHERE id = 1")
    assert _blocked(table, "SELECT * FROM t FOR SHARE", waits + "UPDATE t SET note = 'b' WHERE id = 1")


def test_links_into_00_land_on_one_of_its_headings():
    """`[glossary](00_start_here.ipynb#Glossary)` in any notebook: the anchor is a heading of 00 (spaces as dashes)."""
    start = next(p for p in notebook_paths() if p.name.startswith("00_"))
    anchors = {line.lstrip("#").strip().replace(" ", "-") for cell in _start().cells if cell.cell_type == "markdown"
               for line in cell.source.splitlines() if re.match(r"#{1,6} ", line)}
    assert "Glossary" in anchors
    links = {(name, anchor) for name, text in used_sources().items()
             for anchor in re.findall(rf"{re.escape(start.name)}#([^)\s]+)", text)}
    links |= {("00", anchor) for anchor in re.findall(r"\]\(#([^)\s]+)\)", used_sources()[start.name])}
    assert {anchor for _, anchor in links} <= anchors, sorted(links)


def test_the_parameter_type_examples_raise_the_codes_their_rows_give(table):
    """42P08's example uses the parameter twice; the same test alone raises 42P18 (psycopg sends None untyped)."""
    codes = _sqlstates()
    twice, alone = "(:region IS NULL OR u.region = :region)", ":region IS NULL"
    assert twice in codes["42P08"][-1] and f"`{alone}` alone" in codes["42P18"][-1]
    with db.connect(table) as conn:
        for example, code in [(twice, "42P08"), (alone, "42P18")]:
            sql = f"SELECT 1 FROM t u WHERE {example}".replace("u.region", "u.note").replace(":region", "%(region)s")
            with pytest.raises(psycopg.Error) as raised:
                conn.execute(sql, {"region": None}, prepare=True)
            assert raised.value.sqlstate == code, (example, raised.value.sqlstate)


def test_a_connection_refused_at_connect_time_carries_no_sqlstate(scratch_db):
    """53300 at connect time: a plain OperationalError whose sqlstate is None, the code only in the message."""
    from workbook_utils import urls

    assert "`sqlstate` is `None`" in _sqlstates()["53300"][-1]
    role = f"glossary_limited_{uuid.uuid4().hex[:8]}"
    with db.connect(urls.admin_url()) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0 PASSWORD 'glossary'")
    try:
        refused = psycopg.conninfo.make_conninfo(scratch_db, user=role, password="glossary")
        with pytest.raises(psycopg.OperationalError) as raised:
            psycopg.connect(refused, connect_timeout=5)
        assert type(raised.value) is psycopg.OperationalError and raised.value.sqlstate is None
        assert "too many connections" in str(raised.value)
    finally:
        with db.connect(urls.admin_url()) as admin:
            admin.execute(f"DROP ROLE {role}")


def test_the_terms_the_notebooks_use_have_their_line():
    terms = next(rows for heading, rows in glossary_rows().items() if heading == "Terms")
    assert {"pre-ping", "checkout", "lazy loading", "autocommit", "phantom", "autovacuum", "work_mem"} <= set(terms)
