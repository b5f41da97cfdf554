"""Exercises of notebook 00 (start here): reading the dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Exercise

if TYPE_CHECKING:
    from ..workbook import Workbook


def _rows(wb: Workbook, statement: Any) -> list[tuple]:
    """Run a select() (or SQL text) the learner wrote and return its rows as tuples."""
    from sqlalchemy import text

    if isinstance(statement, str):
        statement = text(statement)
    with wb.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(statement)]


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 00, bound to this notebook's database."""
    q1 = Exercise(
        name="q1",
        question="How many users have no profile row?",
        reference=lambda: wb.query(
            "SELECT count(*) AS n FROM users u WHERE NOT EXISTS "
            "(SELECT FROM profiles p WHERE p.user_id = u.id)")["n"][0].item(),
        hint_text="An anti-join: users for which NOT EXISTS a profiles row with that user_id "
                  "(or a LEFT JOIN … WHERE profiles.user_id IS NULL).",
        solution_code="%sql SELECT count(*) FROM users u WHERE NOT EXISTS "
                      "(SELECT FROM profiles p WHERE p.user_id = u.id)",
    )
    q2 = Exercise(
        name="q2",
        question="Which region has the most users? Answer with its name as a string.",
        reference=lambda: wb.query(
            "SELECT region FROM users GROUP BY region ORDER BY count(*) DESC, region LIMIT 1")["region"][0],
        hint_text="GROUP BY region, ORDER BY count(*) DESC, LIMIT 1.",
        solution_code="%sql SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC LIMIT 1",
    )
    q3 = Exercise(
        name="q3",
        question="Write a SQLAlchemy select() returning (user id, number of posts) for the 5 users "
                 "with the most posts, most first, ties broken by the smaller id.",
        reference=lambda: _rows(wb, "SELECT user_id, count(*) FROM posts GROUP BY user_id "
                                    "ORDER BY count(*) DESC, user_id LIMIT 5"),
        hint_text="select(Post.user_id, func.count()).group_by(Post.user_id)"
                  ".order_by(func.count().desc(), Post.user_id).limit(5)",
        solution_code="from sqlalchemy import func, select\n"
                      "from workbook_utils.models import Post\n"
                      "answer = (select(Post.user_id, func.count()).group_by(Post.user_id)\n"
                      "          .order_by(func.count().desc(), Post.user_id).limit(5))",
        evaluate=lambda statement: _rows(wb, statement),
    )
    return q1, q2, q3
