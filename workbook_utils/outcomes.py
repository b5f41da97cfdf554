"""What a learner did: each exercise check counts an attempt in the learner's own database (`_workbook.outcomes`).

Written by `check()` (exercises), made at provisioning (learners.py), read across the room by room.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import urls

if TYPE_CHECKING:
    import psycopg

SOLVED, TRIED = "solved", "tried"
OUTCOMES_DDL = """CREATE TABLE IF NOT EXISTS _workbook.outcomes (
    notebook text NOT NULL, exercise text NOT NULL, status text NOT NULL CHECK (status IN ('solved', 'tried')),
    attempts int NOT NULL, first_attempt timestamptz NOT NULL, last_attempt timestamptz NOT NULL,
    solved_at timestamptz, PRIMARY KEY (notebook, exercise))"""
UPSERT = """INSERT INTO _workbook.outcomes AS o VALUES (%(nb)s, %(ex)s, %(status)s, 1, now(), now(),
                                                     CASE WHEN %(status)s = 'solved' THEN now() END)
ON CONFLICT (notebook, exercise) DO UPDATE SET attempts = o.attempts + 1, last_attempt = now(),
    status = CASE WHEN o.status = 'solved' THEN 'solved' ELSE excluded.status END,
    solved_at = coalesce(o.solved_at, excluded.solved_at)"""


def record(conn: psycopg.Connection, notebook: str, exercise: str, solved: bool) -> None:
    """Count one attempt at an exercise in this database (the outcomes table is made on first use)."""
    import psycopg

    params = {"nb": notebook, "ex": exercise, "status": SOLVED if solved else TRIED}
    try:
        conn.execute(UPSERT, params)
    except psycopg.errors.UndefinedTable:  # a laptop's database: the learner's own record starts here
        conn.execute(OUTCOMES_DDL)
        conn.execute(UPSERT, params)


def record_here(notebook: str, exercise: str, solved: bool) -> None:
    """Record in the notebooks' own database (DATABASE_URL or the embedded one), bounded to about a second."""
    import psycopg

    with psycopg.connect(urls.plain(urls.libpq_url()), connect_timeout=2, autocommit=True,
                         application_name="workbook-record",
                         options="-c statement_timeout=1000 -c lock_timeout=200") as conn:
        record(conn, notebook, exercise, solved)
