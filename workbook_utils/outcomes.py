"""What a learner did: each exercise check counts an attempt in the learner's own database (`_workbook.outcomes`),
and a failed one also counts the part of the exercise's claim that failed (`_workbook.claims`: a short label cut
from the checker's words by exercises/claims.py; never the answer, its code or a URL).

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

CLAIMS_DDL = """CREATE TABLE IF NOT EXISTS _workbook.claims (
    notebook text NOT NULL, exercise text NOT NULL, claim text NOT NULL CHECK (length(claim) <= 80),
    attempts int NOT NULL, last_attempt timestamptz NOT NULL, PRIMARY KEY (notebook, exercise, claim))"""
CLAIM_UPSERT = """INSERT INTO _workbook.claims AS c VALUES (%(nb)s, %(ex)s, %(claim)s, 1, now())
ON CONFLICT (notebook, exercise, claim) DO UPDATE SET attempts = c.attempts + 1, last_attempt = now()"""


def record(conn: psycopg.Connection, notebook: str, exercise: str, solved: bool, claim: str = "") -> None:
    """Count one attempt at an exercise in this database, and the part of the claim a failed one broke (the tables are
    made on first use)."""
    import psycopg

    params = {"nb": notebook, "ex": exercise, "status": SOLVED if solved else TRIED, "claim": claim[:80]}
    statements = [UPSERT] + ([CLAIM_UPSERT] if claim and not solved else [])
    for statement, ddl in zip(statements, [OUTCOMES_DDL, CLAIMS_DDL], strict=False):
        try:
            conn.execute(statement, params)
        except psycopg.errors.UndefinedTable:  # a laptop's (or an older room's) database: the record starts here
            conn.execute(ddl)
            conn.execute(statement, params)


def record_here(notebook: str, exercise: str, solved: bool, claim: str = "") -> None:
    """Record in the notebooks' own database (DATABASE_URL or the embedded one), bounded to about a second."""
    import psycopg

    with psycopg.connect(urls.plain(urls.libpq_url()), connect_timeout=2, autocommit=True,
                         application_name="workbook-record",
                         options="-c statement_timeout=1000 -c lock_timeout=200") as conn:
        record(conn, notebook, exercise, solved, claim)
