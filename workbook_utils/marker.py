"""The marker table that says a database belongs to the workbook, so seed and reset never touch anyone else's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import WorkbookError

if TYPE_CHECKING:
    import psycopg

OWNER = "database-integration-workbook"


def marker(conn: psycopg.Connection) -> dict[str, str] | None:
    """The workbook's marker table as a dict, or None when this database was not made by the workbook."""
    if conn.execute("SELECT to_regclass('_workbook.meta')").fetchone()[0] is None:
        return None
    rows = dict(conn.execute("SELECT key, value FROM _workbook.meta").fetchall())
    return rows if rows.get("owner") == OWNER else None


def foreign_tables(conn: psycopg.Connection) -> list[str]:
    """Tables in this database that are not the workbook's dataset or marker."""
    rows = conn.execute("""
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_workbook')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def mark(conn: psycopg.Connection) -> None:
    """Record that this database belongs to the workbook."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS _workbook")
    conn.execute("CREATE TABLE IF NOT EXISTS _workbook.meta (key text PRIMARY KEY, value text NOT NULL)")
    conn.execute("INSERT INTO _workbook.meta VALUES ('owner', %s) ON CONFLICT (key) DO NOTHING", [OWNER])


def claim(conn: psycopg.Connection) -> None:
    """Allow writes only to a database the workbook created, or an empty one (which is then marked)."""
    if marker(conn) is not None:
        return
    others = foreign_tables(conn)
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        raise WorkbookError(
            f"Refusing to change {conn.info.dbname} on {conn.info.host}:{conn.info.port}: it holds tables the workbook "
            f"did not create ({shown}) and no workbook marker. Nothing was changed. "
            "Point DATABASE_URL at an empty database, or one the workbook seeded.")
    mark(conn)


def seeded_scale(conn: psycopg.Connection) -> str | None:
    """The scale this database was seeded at, or None if it is not (completely) seeded."""
    return (marker(conn) or {}).get("scale")
