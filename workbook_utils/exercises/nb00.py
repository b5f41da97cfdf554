"""Exercises of notebook 00 (start here): reading the dataset with SQL and with select().

Each answer is a query, not its result. The checker runs it on the seeded data and on two small made-up datasets
drawn afresh for every check (temporary tables named users, profiles and posts, which hide the real ones for that
one session): random ids over a wide range, random names and emails, random regions with a three-way tie at the
top, profiles with and without a website, and a tie of three or more in the number of posts that crosses the top-5
cut. So a number copied from an output, a rule read off the seed script, a constant that guesses the made-up data,
the right count of the wrong rows, or a tie left to chance cannot pass. Every tie is decisive on both datasets: the
winner the question asks for is in the middle by any other key (first, last or mean id, name, email, length, first
or last post id), so a tie settled by another rule fails either way. A tie left to chance is made to fall the wrong
way: the checker keeps a first dataset on which the usual query without a tie-break returns the wrong row.
A query is stopped (statement_timeout) after TIMEOUT seconds on made-up data, and on the seeded data after ten times
the reference's time (TIMEOUT at least).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import Question, WrongKind, sqltree
from .draws import Draw

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..workbook import Workbook

SEEDED = "your result on this database"
MADE_UP = ("your result on a made-up dataset", "your result on a second made-up dataset")
REGIONS = ("africa", "andes", "apac", "arctic", "balkans", "baltics", "benelux", "caribbean", "cascadia", "caucasus", "eu",
           "latam", "levant", "maghreb", "mena", "nordics", "oceania", "us")  # most share an initial with another
TIMEOUT = 3  # seconds a query may run in a check (statement_timeout); on the seeded data at least 10× the reference's
REFERENCE_TIMEOUT = 120  # the reference's own bound, on the largest scale and a busy machine
TRIES = 60  # draws of a made-up dataset before the checker gives up on making a tie fall the wrong way

# The reference solutions, run to get the expected values and printed by q.solution().
Q1_SQL = "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.user_id = u.id)"
Q2_SQL = "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC, region LIMIT 1"
Q3_CODE = """from sqlalchemy import func, select
from workbook_utils.models import Post
answer = (select(Post.user_id, func.count()).group_by(Post.user_id)
          .order_by(func.count().desc(), Post.user_id).limit(5))"""
# The usual answers without a tie-break: a made-up dataset is kept only if each of them returns the wrong rows.
UNBROKEN_TIES = {"q2": ["SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC LIMIT 1",
                        "SELECT region, count(*) FROM users GROUP BY region ORDER BY count(*) DESC, left(region, 1) LIMIT 1"],
                 "q3": ["SELECT user_id, count(*) FROM posts GROUP BY user_id ORDER BY count(*) DESC LIMIT 5",
                        "SELECT u.id, count(p.id) FROM users u JOIN posts p ON p.user_id = u.id GROUP BY u.id "
                        "ORDER BY count(p.id) DESC LIMIT 5"]}

Q1 = Question(
    name="q1",
    text="Write the SQL (as a string) that counts the users who have no profile row. Try it with %sql first; the "
    "checker runs your query here and on two small made-up datasets, drawn afresh for each check.",
    shape='a string holding one `SELECT`, e.g. `q1.check("SELECT count(*) FROM users WHERE …")`; its result is one '
          "row of one number.",
    hint_text="A user has no profile when no profiles row carries that user's id, whatever their id is. Look up NOT "
              "EXISTS (or a LEFT JOIN that keeps the users with no match).",
    solution_code=f'q1.check("{Q1_SQL}")',
    discussion="Why it works: `NOT EXISTS` counts the users for whom no profiles row carries their id, whatever their "
               "ids are. `LEFT JOIN profiles p ON p.user_id = u.id WHERE p.user_id IS NULL` says the same. So does "
               "`NOT IN (SELECT user_id FROM profiles)` here, only because `user_id` is never NULL: one NULL there "
               "and it counts nobody.\n"
               "Common wrong answers:\n"
               "- a number copied from an output: right here, wrong on any other data;\n"
               "- the seed script's rule, `id % 10 = 0`: true of this dataset, not of users;\n"
               "- `WHERE p.website IS NULL` after the join: a profile may have no website (the right shape, the wrong "
               "rows).")
Q2 = Question(
    name="q2",
    text="Write the SQL (as a string) that returns one row: the region with the most users, and its number of users. "
    "On a tie, the region first in alphabetical order wins.",
    shape='a string holding one `SELECT` whose result is one row of two columns, e.g. `("a region", 123)`.',
    hint_text="Count users per region, then sort. One sort key cannot settle a tie: what does the question say "
              "decides it?",
    solution_code=f'q2.check("{Q2_SQL}")',
    discussion="Why it works: `GROUP BY region` counts each region's users, `ORDER BY count(*) DESC, region` puts the "
               "most users first and settles a tie by name, and `LIMIT 1` keeps that row.\n"
               "Common wrong answers:\n"
               "- `ORDER BY count(*) DESC` alone: tied rows come back in whatever order the plan made them, so the "
               "answer changes with the data, the plan or the server version;\n"
               "- `region DESC`, or `min(id)`, `length(region)`, `left(region, 1)` as the second key: the tie settled "
               "by another rule;\n"
               "- a result without `count(*)`: half the question.")
Q3 = Question(
    name="q3",
    text="Write a SQLAlchemy select() returning (user id, number of posts) for the 5 users with the most posts, most "
    "first; on a tie, the smaller user id comes first.",
    shape="a `select(…)` built from the models (not SQL text), assigned to `answer`; its rows look like "
          "`[(9, 6), (4, 5), …]`.",
    hint_text="Start from the select() of §3, but only the posts table is needed: group its rows by their user and "
              "count them. Then sort by two keys, in the order the question gives them.",
    solution_code=Q3_CODE,
    discussion="Why it works: only the posts table is needed. `group_by(Post.user_id)` gives one row per author and "
               "`func.count()` their posts; `order_by(func.count().desc(), Post.user_id)` is the question's own order, "
               "both keys. A join through `User` works too.\n"
               "Common wrong answers:\n"
               "- one sort key: ties at the top-5 cut fall whichever way the plan made them;\n"
               "- `User.name`, `User.email`, `func.min(Post.id)` or the id as text as the second key: another rule "
               "than the question's (as text, 100 comes before 99);\n"
               "- `order_by(Post.user_id)`: the smallest ids, which are the busiest only in the seeded data;\n"
               "- ids copied from an output into `where(Post.user_id.in_(…))`;\n"
               "- an inner join to `Profile`, which drops the authors without a profile.")
QUESTIONS = (Q1, Q2, Q3)


@dataclass(frozen=True)
class MadeUp:
    """A small made-up dataset: each user's id, region, name and email, the websites of those who have a profile
    (None: a profile without one), and the owner of each post in post id order."""

    regions: dict[int, str]
    websites: dict[int, str | None]
    names: dict[int, str]
    emails: dict[int, str]
    post_owners: list[int]

    def __str__(self) -> str:
        ids = sorted(self.regions)
        return (f"{len(ids)} users (ids {ids[0]}…{ids[-1]}), {len(set(self.regions.values()))} regions, "
                f"{len(self.post_owners)} posts")

    @property
    def posts(self) -> dict[int, int]:
        """The number of posts of each user who has some."""
        return dict(Counter(self.post_owners))

    @property
    def q1(self) -> int:
        return len(self.regions) - len(self.websites)

    @property
    def q2(self) -> tuple[str, int]:
        return min(Counter(self.regions.values()).items(), key=lambda rc: (-rc[1], rc[0]))

    @property
    def q3(self) -> list[tuple[int, int]]:
        return sorted(self.posts.items(), key=lambda un: (-un[1], un[0]))[:5]

    @property
    def params(self) -> dict[str, Any]:
        ids = list(self.regions)
        return {"ids": ids, "regions": list(self.regions.values()), "names": [self.names[u] for u in ids],
                "emails": [self.emails[u] for u in ids], "profile_ids": list(self.websites),
                "websites": list(self.websites.values()), "post_owners": self.post_owners}


def _word(rng: random.Random) -> str:
    """Eight random lower-case letters: one length, so every collation sorts them as Python does."""
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=8))


def _nest(rng: random.Random, values: list[Any], groups: list[list[int]]) -> dict[int, Any]:
    """`values` dealt to the users of three groups (outer, right, inner) so that the outer group holds the smallest
    and largest value, the right group the next two: its min and its max both rank in the middle of the three."""
    ordered = sorted(values)
    outer, right, inner = (list(g) for g in groups)
    middle = ordered[2:-2]
    rng.shuffle(middle)
    rest = outer[1:-1] + right[1:-1] + inner
    dealt = {outer[0]: ordered[0], outer[-1]: ordered[-1], right[0]: ordered[1], right[-1]: ordered[-2]}
    return dealt | dict(zip(rest, middle, strict=True))


def _tied_regions(rng: random.Random) -> list[str]:
    """Three regions for the tie at the top, as (outer, right, inner): the right one is first in alphabetical
    order, its length lies strictly between the other two's, and another one shares its initial, so no length,
    name or initial order but the asked one picks it."""
    while True:
        trio = rng.sample(REGIONS, 3)
        right = min(trio)
        short, long = sorted((r for r in trio if r != right), key=len)
        if len(short) < len(right) < len(long) and (short[0] == right[0] or long[0] == right[0]):
            return [short, right, long] if rng.random() < 0.5 else [long, right, short]


def draw_made_up(rng: random.Random) -> MadeUp:
    """Random regions (a three-way tie at the top), profiles (some without a website), posts (a tie of three or more
    across the top-5 cut) and names and emails in no relation to the ids. Every tie is decisive: any other sort
    key than the asked one (a name, an email, a length, the first, last or mean id, the first or last post id, either
    way) picks another winner."""
    trio = _tied_regions(rng)
    others = rng.sample([r for r in REGIONS if r not in trio], rng.randint(0, 3))
    top = rng.randint(3, 12)
    sizes = [top] * 3 + [rng.randint(1, top - 1) for _ in others]
    n_users = sum(sizes)
    labels = [region for region, size in zip(trio + others, sizes, strict=True) for _ in range(size)]
    tied = [list(range(i * top, (i + 1) * top)) for i in range(3)]  # places 0…3·top-1: the tied regions' users
    ids = _nested_ids(rng, n_users, tied)
    regions = {ids[place]: label for place, label in enumerate(labels)}
    tied = [[ids[place] for place in g] for g in tied]
    owners = rng.sample(list(regions), min(n_users, rng.randint(7, 12)))
    tie, start = rng.randint(2, 6), rng.randint(2, 5)
    end = rng.randint(max(6, start + 2), min(8, len(owners)))  # positions start..end tie: three or more, across the cut
    above = sorted(rng.sample(range(tie + 1, tie + 15), start - 1), reverse=True)
    counts = above + [tie] * (end - start + 1) + [rng.randint(1, tie - 1) for _ in owners[end:]]
    tied_authors = sorted(owners[start - 1:end])  # the first is the one the question's order puts first
    right, outer = tied_authors[0], rng.choice(tied_authors[1:])
    names = _decisive_words(rng, list(regions), tied, right, tied_authors)
    emails = {u: f"{w}@example.com" for u, w in _decisive_words(rng, list(regions), tied, right, tied_authors).items()}
    post_owners = _post_order(rng, dict(zip(owners, counts, strict=True)), right, outer)
    with_profile = rng.sample(list(regions), rng.randint(2, n_users - 2))
    websites = {u: (f"https://example.com/~{u}" if rng.random() < 0.6 else None) for u in with_profile}
    websites[with_profile[0]] = None  # at least one profile without a website
    made_up = MadeUp(regions, websites, names, emails, post_owners)
    if all(u in websites for u, _ in made_up.q3):  # a busy author without a profile: an inner join drops them
        del websites[rng.choice([u for u, _ in made_up.q3 if u != with_profile[0]])]
    return made_up


def _nested_ids(rng: random.Random, n_users: int, tied: list[list[int]]) -> list[int]:
    """Random ids for the places 0…n_users-1: nested for the tied regions' places, the right region's mean id in the
    middle of the three (drawn again until it is)."""
    for _ in range(TRIES):
        ids = rng.sample(rng.sample(range(1, 1_000), n_users) + rng.sample(range(1_000, 100_000), n_users), n_users)
        ids[:3 * len(tied[0])] = [id_of for _, id_of in sorted(_nest(rng, ids[:3 * len(tied[0])], tied).items())]
        means = [sum(ids[place] for place in g) / len(g) for g in tied]
        if sorted(means)[1] == means[1]:
            return ids
    raise RuntimeError(f"no nested ids in {TRIES} draws")  # a bug of the checker, not of an answer


def _decisive_words(rng: random.Random, users: list[int], tied: list[list[int]], right: int,
                    tied_authors: list[int]) -> dict[int, str]:
    """Random distinct words for the users: nested for the tied regions, and the tied author the question puts
    first is neither first nor last among the tied authors (drawn again until it is)."""
    tied = [_ends_first(g, tied_authors, right) for g in tied]
    for _ in range(TRIES):
        words: set[str] = set()
        while len(words) < len(users):
            words.add(_word(rng))
        dealt = dict(zip(users, rng.sample(sorted(words), len(users)), strict=True))
        dealt |= _nest(rng, [dealt[u] for g in tied for u in g], tied)
        ranked = sorted(tied_authors, key=dealt.__getitem__)
        if right not in (ranked[0], ranked[-1]):
            return dealt
    raise RuntimeError(f"no decisive words in {TRIES} draws")  # a bug of the checker, not of an answer


def _ends_first(group: list[int], authors: list[int], right: int) -> list[int]:
    """The group with users who are not tied authors at its ends (never `right`): `_nest` gives the ends the
    extreme words, so the tied authors keep words from the middle."""
    ends = ([u for u in group if u not in authors] + [u for u in group if u in authors and u != right])[:2]
    return [ends[0], *(u for u in group if u not in ends), ends[1]]


def _post_order(rng: random.Random, counts: dict[int, int], right: int, outer: int) -> list[int]:
    """Each post's owner in post id order: `outer` owns the first and last post, `right` the second and the
    second to last, so the tied author the question puts first has neither the smallest nor the largest first
    or last post id among the tied."""
    middle = [u for u, n in counts.items() for _ in range(n - 2 if u in (right, outer) else n)]
    rng.shuffle(middle)
    return [outer, right, *middle, right, outer]


def plausible(made_up: MadeUp, avoid: list[tuple[Any, ...]]) -> bool:
    """True if the usual wrong answers give other numbers than the right one here, and `avoid` (the answers on the
    other datasets) differs from this one's in every exercise: no constant passes two datasets."""
    answers = (made_up.q1, made_up.q2[1], made_up.q3)
    smallest_ids = sorted(made_up.posts)[:5]
    tied_at_cut = [u for u, n in made_up.posts.items() if n == made_up.q3[-1][1]]
    return (made_up.q1 != len(made_up.websites) and None in made_up.websites.values()
            and any(w is not None for w in made_up.websites.values())
            and [u for u, _ in made_up.q3] != smallest_ids
            and min(tied_at_cut, key=str) != min(tied_at_cut)   # the ids as text put another first: 100 before 99
            and all(a != b for other in avoid for a, b in zip(answers, other, strict=True)))


MADE_UP_TABLES = ["CREATE TEMP TABLE IF NOT EXISTS users (LIKE public.users INCLUDING DEFAULTS INCLUDING INDEXES)",
                  "CREATE TEMP TABLE IF NOT EXISTS profiles (LIKE public.profiles INCLUDING DEFAULTS INCLUDING INDEXES)",
                  "CREATE TEMP TABLE IF NOT EXISTS posts (LIKE public.posts INCLUDING DEFAULTS INCLUDING INDEXES)"]
LOAD = [
    "TRUNCATE users, profiles, posts",
    """INSERT INTO users (id, email, name, region, created_at)
       SELECT id, email, name, region, '2025-01-01 00:00+00'
       FROM unnest(%(ids)s::bigint[], %(emails)s::text[], %(names)s::text[], %(regions)s::text[])
            AS t(id, email, name, region)""",
    """INSERT INTO profiles (user_id, display_name, website)
       SELECT user_id, 'made-up ' || user_id, website
       FROM unnest(%(profile_ids)s::bigint[], %(websites)s::text[]) AS t(user_id, website)""",
    """INSERT INTO posts (id, user_id, title, body, created_at)
       SELECT id, user_id, 'made-up post', 'text', '2025-01-01 00:00+00'
       FROM unnest(%(post_owners)s::bigint[]) WITH ORDINALITY AS t(user_id, id)""",
]


def load_made_up(conn: Connection, made_up: MadeUp) -> None:
    """Fill this session's temporary users, profiles and posts with the made-up rows."""
    for sql in LOAD:
        conn.exec_driver_sql(sql, made_up.params)


def _ties_fall_wrong(conn: Connection, made_up: MadeUp) -> bool:
    """True if every usual query without a tie-break returns another row than the right answer on this dataset."""
    expected = {"q2": [made_up.q2], "q3": made_up.q3}
    return all([tuple(r) for r in conn.exec_driver_sql(sql)] != expected[name]
               for name, probes in UNBROKEN_TIES.items() for sql in probes)


def draw_pair(rng: random.Random, conn: Connection, seeded: tuple[Any, ...]) -> tuple[MadeUp, MadeUp]:
    """Two made-up datasets whose answers differ from each other's and the seeded data's; on the first, every
    usual query that leaves a tie to chance returns the wrong rows (if TRIES draws find one)."""
    first = _plausible_draw(rng, [seeded])
    for _ in range(TRIES):
        load_made_up(conn, first)
        if _ties_fall_wrong(conn, first):
            break
        first = _plausible_draw(rng, [seeded])
    return first, _plausible_draw(rng, [seeded, _answers(first)])


def _plausible_draw(rng: random.Random, avoid: list[tuple[Any, ...]]) -> MadeUp:
    """The first plausible made-up dataset of the draws (almost every draw is)."""
    for _ in range(TRIES):
        made_up = draw_made_up(rng)
        if plausible(made_up, avoid):
            return made_up
    raise RuntimeError(f"no plausible made-up dataset in {TRIES} draws")  # a bug of the checker, not of an answer


def _answers(made_up: MadeUp) -> tuple[Any, ...]:
    return made_up.q1, made_up.q2[1], made_up.q3


class NotAQuery(WrongKind):
    """The answer is not the kind of query the question asks for."""


def _statement(answer: Any, select_only: bool) -> Any:
    """The answer as something a connection executes: SQL text that only reads (a string or text()), or a select()."""
    from sqlalchemy import Select, TextClause, TextualSelect, text

    if isinstance(answer, Select):
        if select_only:
            _no_raw_sql(answer)
        return answer
    if select_only:
        raise NotAQuery(f"this question asks for a SQLAlchemy select() (got: {type(answer).__name__})")
    if isinstance(answer, TextualSelect):  # text("SELECT …").columns(n=Integer): the text with its result's types
        answer = answer.element
    if isinstance(answer, TextClause):  # text("SELECT …"), as §2 teaches: its SQL is read like a string's
        answer = answer.text
    if not isinstance(answer, str):
        raise NotAQuery(f"pass the SQL text of your query (a string holding a SELECT), not its result (got: "
                        f"{type(answer).__name__}): the checker runs your query on made-up datasets too")
    node = sqltree.one(answer)  # the parser's own message if it does not parse
    if sqltree.kind(node) != "SelectStmt":
        raise NotAQuery(f"pass a query, a SELECT (your SQL is {sqltree._spoken(node)})")
    if sqltree.writes(node):
        raise NotAQuery("pass a query that only reads: yours also changes rows (an INSERT, UPDATE or DELETE in it)")
    if qualified := sorted(name for name in sqltree.tables(answer) if "." in name):
        bare = qualified[0].rpartition(".")[2]
        raise NotAQuery(f"write {bare}, not {qualified[0]}: the checker swaps in made-up tables named {bare}, which "
                        "only an unqualified name reaches")
    return text(answer)


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


def _rows(conn: Connection, statement: Any, seconds: float = TIMEOUT) -> tuple[int, Any]:
    """(number of columns, value) of what `statement` returns; stopped after `seconds` like any runaway query."""
    from sqlalchemy.exc import OperationalError

    conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{round(seconds * 1000)}ms'")
    try:
        result = conn.execute(statement)
        return len(result.keys()), _value([tuple(r) for r in result])
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != "57014":
            raise
        conn.rollback()
        raise NotAQuery(f"your query ran for more than {seconds:.0f} s and was stopped (statement_timeout): a right "
                        "answer takes a fraction of that here") from None


def results(wb: Workbook, made_up_engine: Engine, seeded: tuple[Any, ...], draw: Draw, answers: list[Any],
            select_only: bool = False) -> list[dict[str, Any]]:
    """What each query returns on this database and on the two made-up datasets (nothing is ever committed).

    The reference comes first in `answers`: it runs before a learner's query can break the session. A learner's
    query that returns another number of columns than the reference's is told so at once.
    """
    statements = [_statement(answer, select_only) for answer in answers]
    outs: list[dict[str, Any]] = [{} for _ in statements]
    with wb.engine.connect() as conn:  # never committed: a query that writes leaves nothing behind
        started = time.perf_counter()
        width, outs[0][SEEDED] = _rows(conn, statements[0], seconds=REFERENCE_TIMEOUT)  # the reference, at any scale
        widths, allowed = [width], max(TIMEOUT, 10 * (time.perf_counter() - started))
        for out, statement in zip(outs[1:], statements[1:], strict=True):
            width, out[SEEDED] = _rows(conn, statement, allowed)
            widths.append(width)
        if len(widths) == 2 and widths[0] != widths[1]:
            raise NotAQuery(f"your query returns {_columns(widths[1])}; the question asks for {_columns(widths[0])}")
    with made_up_engine.connect() as conn:  # one pooled session: its temporary tables hide the real ones there only
        for sql in MADE_UP_TABLES:
            conn.exec_driver_sql(sql)
        conn.commit()  # the (empty) tables stay for the next check; the rows below are rolled back at the end
        pair = draw.pick("made-up data", lambda rng: draw_pair(rng, conn, seeded),
                         show=lambda p: f"{p[0]}; {p[1]}")
        for label, made_up in zip(MADE_UP, pair, strict=True):
            load_made_up(conn, made_up)
            for out, statement in zip(outs, statements, strict=True):
                out[label] = _rows(conn, statement)[1]
    return outs


def _columns(n: int) -> str:
    return "1 column" if n == 1 else f"{n} columns"


def load(wb: Workbook) -> tuple[Any, Any, Any]:
    """q1, q2, q3 of notebook 00, bound to this notebook's database; made-up datasets drawn at each check."""
    with wb.engine.connect() as conn:  # wb.engine first: it must never be the made-up engine below
        q3_seeded = [tuple(r) for r in conn.execute(_run(Q3_CODE)["answer"])]
        seeded = (conn.exec_driver_sql(Q1_SQL).scalar_one(), conn.exec_driver_sql(Q2_SQL).one()[1], q3_seeded)
    made_up_engine = wb.make_engine(pool_size=1, max_overflow=0)  # a check waits for another's (threads) to end

    def checker(solution: Callable[[], Any], select_only: bool = False) -> dict[str, Any]:
        """reference and evaluate of one exercise: the answer runs beside the reference, on the same datasets."""

        def evaluate(answer: Any, draw: Draw) -> dict[str, Any]:
            draw.memo["expected"], got = results(wb, made_up_engine, seeded, draw, [solution(), answer], select_only)
            return got

        def reference(draw: Draw) -> dict[str, Any]:
            if "expected" not in draw.memo:
                draw.memo["expected"] = results(wb, made_up_engine, seeded, draw, [solution()], select_only)[0]
            return draw.memo["expected"]

        return {"reference": reference, "evaluate": evaluate, "drawn": True}

    q1 = Q1.exercise(**checker(lambda: Q1_SQL))
    q2 = Q2.exercise(**checker(lambda: Q2_SQL))
    q3 = Q3.exercise(**checker(lambda: _run(Q3_CODE)["answer"], select_only=True))
    return q1, q2, q3


def _run(code: str) -> dict[str, Any]:
    """The names a solution's code defines."""
    names: dict[str, Any] = {}
    exec(code, names)
    return names
