"""Exercises of notebook 00 (start here): reading the dataset with SQL and with select().

Each answer is a query, not its result: the checker runs it on the seeded data and again on a small made-up
dataset (temporary tables named users, profiles and posts, which hide the real ones for that one session),
so a number copied from an earlier output, a rule read off the seed script, or a tie broken the other way
cannot pass. The made-up dataset grows by a random number of users each time the exercises are loaded, so its
answers cannot be written into a query either.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import Exercise, WrongKind

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

SEEDED, MADE_UP = "your result on this database", "your result on a small made-up dataset"

# Twelve users. No profile: users 2, 5, 7, 11 (not "every tenth", as in the seed; user 10 has one).
# Regions: us and apac tie at 4 users. Posts: user 9 has 6, user 4 has 5, users 3, 8, 11 and 12 have 3 each,
# so the tie at 3 posts crosses the top-5 cut, and the busiest users are not the smallest ids.
# Then `pairs` more users without posts (ids 13, 14, …), alternately us and apac so that the tie stays, of which
# the ids in `without_profile` have no profile: both drawn at random when the exercises are loaded.
MADE_UP_SQL = [
    "CREATE TEMP TABLE users (LIKE public.users INCLUDING DEFAULTS)",
    "CREATE TEMP TABLE profiles (LIKE public.profiles INCLUDING DEFAULTS)",
    "CREATE TEMP TABLE posts (LIKE public.posts INCLUDING DEFAULTS)",
    """INSERT INTO users (id, email, name, region, created_at)
       SELECT id, 'made-up' || id || '@example.com', 'Made Up ' || id, region, '2025-01-01 00:00+00'
       FROM unnest(ARRAY[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                   ARRAY['us', 'apac', 'us', 'eu', 'apac', 'us', 'eu', 'apac', 'latam', 'us', 'apac', 'eu'])
            AS t(id, region)""",
    """INSERT INTO users (id, email, name, region, created_at)
       SELECT id, 'made-up' || id || '@example.com', 'Made Up ' || id,
              CASE WHEN mod(id, 2) = 1 THEN 'us' ELSE 'apac' END, '2025-01-01 00:00+00'
       FROM generate_series(13, 12 + 2 * %(pairs)s) AS id""",
    """INSERT INTO profiles (user_id, display_name, website)
       SELECT id, 'made-up ' || id, 'https://example.com/~' || id
       FROM users WHERE id NOT IN (2, 5, 7, 11) AND id <> ALL(%(without_profile)s)""",
    """INSERT INTO posts (id, user_id, title, body, created_at)
       SELECT row_number() OVER (), user_id, 'made-up post', 'text', '2025-01-01 00:00+00'
       FROM unnest(ARRAY[9, 4, 3, 8, 11, 12, 1, 6], ARRAY[6, 5, 3, 3, 3, 3, 2, 1]) AS t(user_id, n),
            generate_series(1, n)""",
]


@dataclass
class MadeUp:
    """The random part of the made-up dataset: how many pairs of users are added, and which of them have no profile."""

    pairs: int
    without_profile: list[int] = field(default_factory=list)

    @classmethod
    def draw(cls, rng: random.Random | None = None, seeded: tuple[int, int] = (-1, -1)) -> MadeUp:
        """A random draw whose answers to q1 and q2 (their counts) differ from `seeded`, the answers on the real
        data: a number copied from an output must never pass here by chance."""
        rng = rng or random.Random()
        while True:
            pairs = rng.randint(1, 10)  # 14 to 32 users: the seed's "every tenth" rule never gives the right count
            made_up = cls(pairs, sorted(rng.sample(range(13, 13 + 2 * pairs), rng.randint(0, 2 * pairs))))
            if (made_up.q1, made_up.q2) != seeded and made_up.q1 != seeded[0] and made_up.q2 != seeded[1]:
                return made_up

    @property
    def q1(self) -> int:
        """Users without a profile: 2, 5, 7, 11 and the drawn ones."""
        return 4 + len(self.without_profile)

    @property
    def q2(self) -> int:
        """Users of apac (which ties with us and wins on the name)."""
        return 4 + self.pairs

    @property
    def params(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "without_profile": self.without_profile}


# The reference solutions, run to get the expected values and printed by q.solution().
Q1_SQL = "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)"
Q2_SQL = "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC, region LIMIT 1"
Q3_CODE = """from sqlalchemy import func, select
from workbook_utils.models import Post
answer = (select(Post.user_id, func.count()).group_by(Post.user_id)
          .order_by(func.count().desc(), Post.user_id).limit(5))"""


class NotAQuery(WrongKind):
    """The answer is not the kind of query the question asks for."""


def _statement(answer: Any, select_only: bool) -> Any:
    """The answer as something a connection executes: SQL text (a string) or a select()."""
    from sqlalchemy import Select, text

    if isinstance(answer, Select):
        if select_only:
            _no_raw_sql(answer)
        return answer
    if select_only:
        raise NotAQuery(f"this question asks for a SQLAlchemy select() (got: {type(answer).__name__})")
    if isinstance(answer, str) and re.sub(r"^(\s*--[^\n]*\n)*[\s(]*", "", answer).lower().startswith(("select", "with")):
        return text(answer)
    got = repr(answer[:40]) if isinstance(answer, str) else type(answer).__name__
    raise NotAQuery(f"pass the SQL text of your query (a string starting with SELECT or WITH), not its result "
                    f"(got: {got}): the checker runs your query on a second, made-up dataset")


def _no_raw_sql(statement: Any) -> None:
    """Refuse a select() whose columns, FROM, filters or sort keys are SQL text (text(), literal_column())."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import ColumnClause, TextClause

    for element in visitors.iterate(statement):
        literal = isinstance(element, ColumnClause) and element.is_literal and element.name != "*"  # count(*)'s star
        if isinstance(element, TextClause) or literal:
            raise NotAQuery("build the query from the models (Post.user_id, func.count(), …), not from SQL text "
                            f"inside select() (found: {str(element)[:40]!r})")


def _number(value: Any) -> Any:
    """A Decimal (count(*)::numeric, sum(), avg()) as the int or float it stands for; anything else as it is."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _value(rows: list[tuple]) -> Any:
    """One row of one column reads as that value; anything else as the list of rows."""
    rows = [tuple(_number(v) for v in row) for row in rows]
    return rows[0][0] if len(rows) == 1 and len(rows[0]) == 1 else rows


def results(wb: Workbook, made_up_engine: Engine, made_up: MadeUp, answer: Any,
            select_only: bool = False) -> dict[str, Any]:
    """What the query returns on this database and on the made-up dataset (both rolled back afterwards)."""
    statement = _statement(answer, select_only)
    out = {}
    with wb.engine.connect() as conn:  # never committed: a query that writes leaves nothing behind
        out[SEEDED] = _value([tuple(r) for r in conn.execute(statement)])
    with made_up_engine.connect() as conn:  # a fresh session (NullPool): its temporary tables end with it
        for sql in MADE_UP_SQL:
            conn.exec_driver_sql(sql, made_up.params)
        out[MADE_UP] = _value([tuple(r) for r in conn.execute(statement)])
    return out


def load(wb: Workbook, made_up: MadeUp | None = None) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 00, bound to this notebook's database (and a made-up dataset drawn at random)."""
    from sqlalchemy.pool import NullPool

    made_up_engine = wb.make_engine(poolclass=NullPool)
    if made_up is None:
        with wb.engine.connect() as conn:
            seeded = (conn.exec_driver_sql(Q1_SQL).scalar_one(), conn.exec_driver_sql(Q2_SQL).one()[1])
        made_up = MadeUp.draw(seeded=seeded)

    def check_query(select_only: bool = False):
        return lambda answer: results(wb, made_up_engine, made_up, answer, select_only)

    q1 = Exercise(
        name="q1",
        question="Write the SQL (as a string) that counts the users who have no profile row. Try it with %sql "
                 "first; the checker runs your query here and on a small made-up dataset.",
        reference=lambda: check_query()(Q1_SQL),
        hint_text="A user has no profile when no profiles row carries that user's id, whatever their id is. "
                  "Look up NOT EXISTS (or a LEFT JOIN that keeps the users with no match).",
        solution_code=f'q1.check("{Q1_SQL}")',
        evaluate=check_query(),
    )
    q2 = Exercise(
        name="q2",
        question="Write the SQL (as a string) that returns one row: the region with the most users, and its "
                 "number of users. On a tie, the region first in alphabetical order wins.",
        reference=lambda: check_query()(Q2_SQL),
        hint_text="Count users per region, then sort. One sort key cannot settle a tie: "
                  "what does the question say decides it?",
        solution_code=f'q2.check("{Q2_SQL}")',
        evaluate=check_query(),
    )
    q3 = Exercise(
        name="q3",
        question="Write a SQLAlchemy select() returning (user id, number of posts) for the 5 users with the "
                 "most posts, most first; on a tie, the smaller user id comes first.",
        reference=lambda: check_query(select_only=True)(_run(Q3_CODE)["answer"]),
        hint_text="Start from the select() of §3, but only the posts table is needed: group its rows by their "
                  "user and count them. Then sort by two keys, in the order the question gives them.",
        solution_code=Q3_CODE,
        evaluate=check_query(select_only=True),
    )
    return q1, q2, q3


def _run(code: str) -> dict[str, Any]:
    """The names a solution's code defines."""
    names: dict[str, Any] = {}
    exec(code, names)
    return names
