"""Exercises of notebook 03 (EXPLAIN ANALYZE): an index a plan uses, keyset pagination, the top statement.

Each check runs the answer under conditions drawn afresh: q1 reads the plans of the busiest author, the quietest and
one drawn at random; q2 walks a drawn number of pages and starts once more from a cursor drawn inside a run of rows
that share a created_at; q3 runs two pieces of work in a random order, with statements new to each check. SQL is read
with PostgreSQL's parser (`sqltree`), never with regexes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import first_line
from . import NOT_ATTEMPTED, Exercise, Question, WrongKind, sqltree
from .draws import Draw

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

PAGE, PAGES, NEWEST = 20, 4, 5
READS_ONLY_ITS_PAGE = (f"each page reads only its own {PAGE} rows (and the cursor's, at most): the index scan starts at "
                       "the cursor itself, not at the first row, nor at the first row with the cursor's created_at")
Q1_ROWS, Q1_AUTHORS = 20_000, 100  # q1_posts: every author has dozens of posts (90 to 2,000), whatever the scale
Q1_PAGES = NEWEST + 5              # an index's root and leaf (or two), and one table page per row returned
Q1_REFERENCE = "CREATE INDEX ON q1_posts (user_id, created_at)"

NEXT_PAGE_STARTER = '''
def next_page(after):
    """The 20 newest rows of feed after the row `after` = (created_at, id), or the first page if None."""
    feed = table("feed", column("id"), column("created_at"))
    return select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)
'''

TOP_STATEMENT_STARTER = '''
def top_statement(before, after):
    """The query text of the statement with the most total time between the two snapshots."""
    return ____
'''

SNAPSHOT = """SELECT queryid, calls, total_exec_time, query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND userid = current_user::regrole
  AND toplevel"""


def build_tables(engine: Engine) -> None:
    """q1's posts without any index, and q2's feed (timestamps cut to the week, so many rows tie).

    q1_posts is generated (the same rows every time): author 1 writes a tenth of the posts, the quietest about 90;
    authors 91-100 stopped posting after January, so an index that walks created_at first reaches their newest
    posts only after most of the table.
    """
    with engine.begin() as conn:
        conn.connection.driver_connection.execute(f"""
            DROP TABLE IF EXISTS nb03.q1_posts, nb03.feed;
            SELECT setseed(0.3);
            CREATE TABLE q1_posts AS
            SELECT id, user_id, 'post ' || id AS title,
                   timestamptz '2024-01-01' + random() * CASE WHEN user_id > {Q1_AUTHORS - 10} THEN interval '30 days'
                                                              ELSE interval '365 days' END AS created_at
            FROM (SELECT g AS id, 1 + floor({Q1_AUTHORS} * random() ^ 2)::int AS user_id
                  FROM generate_series(1, {Q1_ROWS}) AS g) AS drawn;
            CREATE TABLE feed AS SELECT id, date_trunc('week', created_at) AS created_at, title FROM public.posts;
            ALTER TABLE feed ADD PRIMARY KEY (id);
            CREATE INDEX feed_created_id ON feed (created_at, id);
            ANALYZE q1_posts; ANALYZE feed""")


def users_to_check(engine: Engine, draw: Draw) -> list[int]:
    """The busiest author, the quietest (whose posts are old), and one drawn for this check."""
    from sqlalchemy import text

    with engine.connect() as conn:
        authors = conn.execute(text("SELECT user_id FROM q1_posts GROUP BY user_id "
                                    "ORDER BY count(*) DESC, user_id")).scalars().all()
    return [authors[0], authors[-1], draw.choice("author", authors[1:-1])]


def newest_posts(user_id: int) -> Any:
    from sqlalchemy import column, select, table

    posts = table("q1_posts", column("id"), column("user_id"), column("created_at"))
    return (select(posts.c.id).where(posts.c.user_id == user_id)
            .order_by(posts.c.created_at.desc()).limit(NEWEST))


def one_create_index(ddl: Any) -> str:
    """The learner's statement, read by PostgreSQL's parser; WrongKind unless it is one CREATE INDEX."""
    if not isinstance(ddl, str):
        raise WrongKind("give one CREATE INDEX statement, as a string")
    try:
        statements = sqltree.parse(ddl)
    except sqltree.UnreadableSQL as error:
        raise WrongKind(f"{error} (give one CREATE INDEX statement, as a string)") from None
    if len(statements) != 1 or sqltree.kind(statements[0]) != "IndexStmt":
        raise WrongKind("give one CREATE INDEX statement, as a string")
    if sqltree.index(ddl).concurrently:
        raise WrongKind("CONCURRENTLY cannot run inside the checker's transaction: leave it out (the index is the same)")
    return ddl


def keeps_every_author(conn: Any, predicate: str) -> bool:
    """True if a partial index's WHERE holds for every post of q1_posts and for a new author's post written now
    (`WHERE user_id IS NOT NULL` does; `WHERE user_id <= 100` leaves out the next author)."""
    posts = ("SELECT id, user_id, title, created_at FROM q1_posts UNION ALL "
             "SELECT (SELECT coalesce(max(id), 0) + 1 FROM q1_posts), 2147483647, 'new', now()")   # the next id
    sql = f"SELECT bool_and(coalesce({predicate}, false)) FROM ({posts}) AS q1_posts"
    return bool(conn.exec_driver_sql(sql.replace("%", "%%")).scalar_one())


def index_verdict(engine: Engine, ddl: Any, draw: Draw) -> dict[str, bool]:
    """Create the learner's index in a transaction (rolled back), then read the plans of three authors' newest posts."""
    from .. import plans

    statement = one_create_index(ddl)
    users = users_to_check(engine, draw)
    with engine.connect() as conn:
        expected = [conn.execute(newest_posts(u)).scalars().all() for u in users]
        for index in conn.exec_driver_sql("SELECT indexrelid::regclass::text FROM pg_index "
                                          "WHERE indrelid = 'q1_posts'::regclass").scalars().all():
            conn.exec_driver_sql(f"DROP INDEX {index}")  # one made in the notebook: the answer is judged alone
        conn.exec_driver_sql(statement.replace("%", "%%"))
        predicate = conn.exec_driver_sql("SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                                         "WHERE indrelid = 'q1_posts'::regclass AND indpred IS NOT NULL").scalar()
        if predicate is not None and not keeps_every_author(conn, predicate):
            conn.rollback()
            raise WrongKind("a partial index (CREATE INDEX … WHERE …) holds only the rows its WHERE names; the page "
                            "must be fast for every author, a new one too, so index every author's posts")
        found = [plans.explain(conn, newest_posts(u)) for u in users]
        rows = [conn.execute(newest_posts(u)).scalars().all() for u in users]
        conn.rollback()
    return {"each plan reads q1_posts through an index": all(plans.indexes(p) for p in found),
            "no Sort node": all("Sort" not in plans.node_types(p) for p in found),
            f"at most {NEWEST} rows and {Q1_PAGES} pages read per author":
                all(plans.summary(p)["rows read by scans"] <= NEWEST and plans.summary(p)["buffers"] <= Q1_PAGES
                    for p in found),
            "the same posts": rows == expected}


def offset_page(page: int) -> Any:
    from sqlalchemy import column, select, table

    feed = table("feed", column("id"), column("created_at"))
    return (select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc())
            .limit(PAGE).offset((page - 1) * PAGE))


def keyset_reference(after: Any) -> Any:
    """Reference for q2: the row-value comparison the (created_at, id) index serves."""
    from sqlalchemy import column, select, table, tuple_

    feed = table("feed", column("id"), column("created_at"))
    stmt = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(PAGE)
    return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))


def sql_of(statement: Any) -> str:
    """The SQL a statement compiles to for PostgreSQL, with $1-style placeholders (which the parser reads)."""
    from sqlalchemy.dialects import postgresql

    if not hasattr(statement, "compile"):
        raise WrongKind(f"next_page should return a SQLAlchemy select(), not {type(statement).__name__}")
    return str(statement.compile(dialect=postgresql.dialect(paramstyle="numeric_dollar")))


def orders_newest_first(statement: Any) -> bool:
    """True if the statement's outermost ORDER BY starts with created_at DESC, id DESC: the order its rows come back
    in (an ORDER BY inside a subquery promises nothing about the rows of the query around it). A key given by
    position (ORDER BY 2) names the column listed there."""
    sql = sql_of(statement)
    targets = sqltree.one(sql).targetList or ()
    names = [target.name or sqltree.deparse(target.val) for target in targets]

    def column(expression: str) -> str:
        if expression.isdigit() and 0 < int(expression) <= len(names):
            expression = names[int(expression) - 1]
        return expression.rpartition(".")[2].strip('"')

    keys = [(column(key.expression), key.descending) for key in sqltree.order_by(sql)]
    return keys[:2] == [("created_at", True), ("id", True)]


def tie_cursor(engine: Engine, draw: Draw) -> tuple[Any, int]:
    """A row drawn inside a run of rows that share its created_at (neither first nor last of the run): the cursor
    that tells a tie-breaking keyset from one that skips or repeats the run's other rows.

    Only runs with ten pages of older rows are drawn: with a few dozen rows left, the planner reads them all
    (a Bitmap Heap Scan) and sorts them, whatever the query, and no answer could read only its page. And only
    cursors above some id of a newer week: a cursor on the id alone (`id < :id`) then returns a newer row first. And
    only cursors with fewer than a page of the run after them: the page crosses into the next week (at scale small
    a week holds ~2,000 rows, and a page inside one cannot tell the week's end is missed).
    """
    from sqlalchemy import text

    with engine.connect() as conn:
        runs = conn.execute(text(
            "SELECT created_at, ids, newer_min FROM (SELECT created_at, array_agg(id ORDER BY id) AS ids, count(*) AS n,"
            "  sum(count(*)) OVER (ORDER BY created_at) - count(*) AS older, min(min(id)) OVER (ORDER BY created_at "
            "  DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_min FROM feed GROUP BY created_at) AS runs "
            "WHERE n >= 3 AND older >= :older AND newer_min < ids[least(n - 1, :page)] ORDER BY created_at"),
            {"older": 10 * PAGE, "page": PAGE}).all()
    created_at, ids, newer_min = draw.pick("tie", lambda rng: rng.choice(runs),
                                           show=lambda run: f"a week of {len(run[1])} rows")
    return created_at, draw.pick("cursor id", lambda rng: rng.choice([i for i in ids[1:min(len(ids) - 1, PAGE)]
                                                                        if i > newer_min]))


def rows_of(conn: Any, statement: Any) -> list[tuple[int, Any]]:
    """(id, created_at) of each row, read by column name (a select may list them in any order), in the order the
    statement returns them."""
    rows = conn.execute(statement).mappings().all()
    if rows and not {"id", "created_at"} <= set(rows[0].keys()):
        raise WrongKind(f"next_page's rows should have columns named id and created_at, not {', '.join(rows[0])}")
    return [(r["id"], r["created_at"]) for r in rows]


def keyset_verdict(engine: Engine, next_page: Callable[[Any], Any], draw: Draw) -> dict[str, bool]:
    """Walk a drawn number of pages with the learner's function, each cursor the last row seen, and compare with
    OFFSET's pages; then ask for the page after a row drawn inside a run of tied created_at.

    The ORDER BY is read from each statement: without the id the pages come out right here only because the
    (created_at, id) index hands ties over in id order, which no query promises.
    """
    from .. import plans

    walked = draw.integer("pages", 3, 7)
    cursor = tie_cursor(engine, draw)
    with engine.connect() as conn:
        after, pages, statements = None, [], []
        for _ in range(walked):
            statements.append(next_page(after))
            pages.append(rows_of(conn, statements[-1]))
            after = (pages[-1][-1][1], pages[-1][-1][0]) if pages[-1] else None   # (created_at, id), as asked
        expected = [rows_of(conn, offset_page(p)) for p in range(1, walked + 1)]
        statements.append(next_page(cursor))
        from_tie = rows_of(conn, statements[-1])
        plan = plans.explain(conn, statements[walked - 1])
        tie_plan = plans.explain(conn, statements[-1])
        expected_tie = rows_of(conn, keyset_reference(cursor))
    return {"every page ordered by created_at DESC, then id DESC (the outermost ORDER BY)":
                all(map(orders_newest_first, statements)),
            "the same rows as OFFSET on each page walked": pages == expected,
            "after a row that shares its created_at with others: the rows that follow it": from_tie == expected_tie,
            READS_ONLY_ITS_PAGE: max(plans.summary(plan)["rows read by scans"],
                                                             plans.summary(tie_plan)["rows read by scans"]) <= PAGE + 1}


NO_STATEMENTS = ("Skipped: pg_stat_statements is not installed here ({why}): it must be in shared_preload_libraries, "
                 "then `CREATE EXTENSION pg_stat_statements` in this database. q3 cannot be checked on this server.")


def statements_missing(engine: Engine) -> str | None:
    """Why this engine cannot read pg_stat_statements (the server's first line), or None when it can."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT queryid FROM pg_stat_statements WHERE userid = current_user::regrole "
                                 "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                                 "LIMIT 1").all()
    except DBAPIError as error:
        return first_line(error.orig or error)
    return None


@dataclass
class Unavailable(Exercise):
    """An exercise this server cannot check: `check` prints one "Skipped:" line; hint, solution and discussion stay."""

    reason: str = ""

    def verdict(self, answer: Any, seed: int | None = None) -> tuple[str, str | None]:
        """Not attempted, whatever the answer, and why."""
        return NOT_ATTEMPTED, self.reason

    def check(self, answer: Any, seed: int | None = None) -> None:
        """Print why the answer cannot be checked here (nothing is recorded)."""
        print(self.reason)


def snapshot(engine: Engine) -> pd.DataFrame:
    """pg_stat_statements for this database and role (what section 10 reads)."""
    import pandas as pd
    from sqlalchemy import text

    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(text(SNAPSHOT)).mappings().all())


# q3's statements. Each check makes a table with a new name, so the statements that read it are new to
# pg_stat_statements (a new queryid) and their text cannot be known in advance; the others were seen before.
HISTORY = "SELECT pg_sleep(0.2) FROM pg_roles WHERE rolname = current_user"          # much time, before the work
SLOW = "SELECT pg_sleep(0.06) FROM pg_namespace WHERE nspname = 'pg_catalog'"      # the slowest single call
MANY = "SELECT count(*) FROM pg_class WHERE relname = 'nb03-q3'"                   # the most calls
HISTORY_AGAIN = HISTORY.replace("0.2", "0.001")   # HISTORY's queryid (a constant is $1): it ran, but its time is old
# (its 2 calls times its mean over all time, ~67 ms a call, beat the top's 20 calls of 4 ms)


def rounds(fresh: str) -> dict[str, tuple[list[tuple[str, int]], str]]:
    """Two pieces of work: (statements and how many times each runs, the one that spends the most time)."""
    top_new = f"SELECT pg_sleep(0.004) FROM {fresh}"
    return {
        "the top statement when it first ran during the work": (
            [(MANY, 40), (SLOW, 1), (HISTORY_AGAIN, 2), (f"SELECT count(*) FROM {fresh}", 5), (top_new, 20)], top_new),
        "the top statement when it had run before the work": (
            [(MANY, 40), (f"SELECT pg_sleep(0.002), one FROM {fresh}", 10), (SLOW, 3), (f"SELECT max(one) FROM {fresh}", 5)],
            SLOW),
    }


def query_id(engine: Engine, sql: str) -> int:
    """The queryid pg_stat_statements files `sql` under (EXPLAIN VERBOSE prints it; the statement does not run)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").scalar_one()[0]["Query Identifier"]


def run_workload(engine: Engine, top: Callable[[pd.DataFrame, pd.DataFrame], Any]) -> dict[str, bool]:
    """Run each round of q3's work between two snapshots (rounds in random order); is `top` right on each?"""
    import random

    with engine.begin() as conn:
        for sql in (HISTORY, SLOW, MANY):   # seen before any snapshot
            conn.exec_driver_sql(sql).all()
    verdict = {name: _judged_round(engine, top, name) for name in random.sample(list(rounds("")), 2)}
    return dict(sorted(verdict.items()))


def _judged_round(engine: Engine, top: Callable[[pd.DataFrame, pd.DataFrame], Any], name: str, tries: int = 3) -> bool:
    """Is `top` right on the round `name`? Each run reads a table with a new name, so its statements are new to
    pg_stat_statements. A run a busy machine disturbed (the measured top is not the designed one, say the 40 cheap
    calls took longer than the sleeps) is run again; after `tries` the measured top is the truth."""
    import random
    import secrets

    from . import WrongKind

    for _ in range(tries):
        fresh = f"q3_{secrets.token_hex(4)}"
        work, designed = rounds(fresh)[name]
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {fresh} AS SELECT 1 AS one")
        try:
            before = snapshot(engine)
            with engine.connect() as conn:
                for sql, times in random.sample(work, len(work)):
                    for _ in range(times):
                        conn.exec_driver_sql(sql).all()
            after = snapshot(engine)
            measured = top_reference(before.copy(), after.copy())
            if measured == after.loc[after["queryid"] == query_id(engine, designed), "query"].iloc[0]:
                break
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE {fresh}")
    answer = top(before.copy(), after.copy())
    if not isinstance(answer, str):
        raise WrongKind(f"top_statement should return the query text (a str), not {type(answer).__name__}")
    return answer == measured


def top_reference(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Reference for q3: the difference of the two snapshots by queryid (new statements count from zero)."""
    work = after.merge(before, on="queryid", how="left", suffixes=("", "_before")).fillna({"total_exec_time_before": 0})
    work["total"] = work["total_exec_time"] - work["total_exec_time_before"]
    return work.sort_values("total", ascending=False)["query"].iloc[0]


Q1 = Question(
    name="q1",
    text=f"The profile page shows a user's {NEWEST} newest posts: `SELECT id FROM q1_posts WHERE user_id = :u ORDER BY "
         f"created_at DESC LIMIT {NEWEST}`. q1_posts ({Q1_ROWS:,} posts by {Q1_AUTHORS} authors) has no index. Give one "
         f"CREATE INDEX statement after which the plan, for any author, reads only those {NEWEST} rows through the "
         "index (a few pages), with no Sort node. The check reads the plans of the busiest author, the quietest, and "
         "one drawn at random.",
    shape="one `CREATE INDEX` statement as a string, assigned to `index_sql`, e.g. "
          "`index_sql = \"CREATE INDEX ON q1_posts (…)\"`.",
    hint_text="q1.check(\"CREATE INDEX ON q1_posts (user_id)\") says which claim fails: which node is still "
              "needed, and why? An index hands rows over in the order it stores them. In which order would its "
              "entries hold one author's posts newest first, one after the other?",
    solution_code='index_sql = "CREATE INDEX q1_posts_user_created ON q1_posts (user_id, created_at DESC)"\n'
                  'q1.check(index_sql)',
    discussion="Why it works: in an index on (user_id, created_at) one author's entries sit side by side, ordered by "
               "date, so the plan walks them from the newest (backwards if need be) and stops after five: Limit → "
               "Index Scan, no Sort. DESC in the index is optional, since a B-tree is read in both directions.\n"
               "Common wrong answers:\n"
               "- (user_id) alone: finds the author's rows, then sorts them all (a Sort node), which costs most for "
               "the busiest author;\n"
               "- (created_at) or (created_at, user_id): walks everyone's posts by date until five are the author's, "
               "which for an author whose posts are old is most of the table;\n"
               "- a partial index for the authors you tried: the next author gets no index at all.",
)

Q2 = Question(
    name="q2",
    text=f"feed(id, created_at) is paged newest first, {PAGE} rows a page, ordered by (created_at, id); many rows "
         "share a created_at. Fix next_page(after): given the (created_at, id) of the last row shown, it returns the "
         f"next page, the same rows as OFFSET would. Its plan must read only that page's {PAGE} rows: none before "
         "the cursor, not even those that share its created_at. The check walks a drawn number of pages, then starts "
         "from a row drawn inside a run of rows with the same created_at.",
    shape="`next_page(after)` returns a `select()`; `after` is `None` (first page) or a tuple `(created_at, id)`.",
    hint_text="Instead of counting rows to skip, ask for the rows that come after the last one shown, in the "
              "page's order. Many rows share the last row's created_at: for those, 'after' is decided by id. "
              "SQL can compare two columns at once, in the order an index on both stores them.",
    solution_code="def next_page(after):\n"
                  "    feed = table('feed', column('id'), column('created_at'))\n"
                  "    stmt = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), "
                  "feed.c.id.desc()).limit(20)\n"
                  "    if after is None:\n        return stmt\n"
                  "    return stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))\n\n"
                  "q2.check(next_page)",
    discussion="Why it works: `(created_at, id) < (:c, :i)` is a row comparison, true for the rows after the cursor "
               "in the page's order, ties included; the index on (created_at, id) starts right there (its Index "
               "Cond), so the plan reads the page's 20 rows whatever the page number.\n"
               "Common wrong answers:\n"
               "- `created_at < :c`: skips the rows that share the cursor's created_at; `<=` repeats them;\n"
               "- `created_at <= :c AND (created_at < :c OR id < :i)`, the form for databases without row "
               "comparisons: the right rows, but its Index Cond starts at the cursor's created_at, so the plan reads "
               "that run's earlier rows again and throws them away (Rows Removed by Filter); a row comparison starts "
               "the Index Cond at the cursor itself;\n"
               "- ORDER BY created_at alone: ties come back in whatever order the plan gives, so a cursor can skip "
               "rows on another plan;\n"
               "- the keyset inside a subquery, with no ORDER BY outside: the outer query promises no order at all.",
)

Q3 = Question(
    name="q3",
    text="top_statement(before, after) gets two pg_stat_statements snapshots of this database and role "
         "(DataFrames: queryid, calls, total_exec_time, query) taken around a piece of work. Return the query text "
         "of the statement that spent the most total time in that work. (The check runs two pieces of work, with "
         "statements new to each check.)",
    shape="`top_statement(before, after)` returns one `str`: the `query` of one row of `after`.",
    hint_text="Totals count since the statistics were reset: subtract `before` from `after` by queryid "
              "(a statement first seen in between is missing from `before`: it started at 0).",
    solution_code="def top_statement(before, after):\n"
                  "    work = after.merge(before, on='queryid', how='left', suffixes=('', '_before'))\n"
                  "    work['total'] = work['total_exec_time'] - work['total_exec_time_before'].fillna(0)\n"
                  "    return work.sort_values('total', ascending=False)['query'].iloc[0]\n\n"
                  "q3.check(top_statement)",
    discussion="Why it works: the view's totals run since its last reset, so the work is the difference of two "
               "snapshots, matched on queryid; a statement first seen during the work is missing from `before` and "
               "counts from 0 (the left merge and fillna).\n"
               "Common wrong answers:\n"
               "- sorting `after` alone: the statement that was slow last week wins;\n"
               "- an inner merge, or NaN left in: the statements new to the work drop out or sort last;\n"
               "- mean time or calls instead of total time: the slowest single call, or the most frequent one, is not "
               "always where the time went.",
)

QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook, engine: Engine) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 03, on tables of the scratch schema (`engine` puts nb03 first on its search_path)."""
    build_tables(engine)
    q1 = Q1.exercise(reference=lambda draw: index_verdict(engine, Q1_REFERENCE, draw),
                     evaluate=lambda ddl, draw: index_verdict(engine, ddl, draw), drawn=True)
    q2 = Q2.exercise(reference=lambda draw: keyset_verdict(engine, keyset_reference, draw),
                     evaluate=lambda next_page, draw: keyset_verdict(engine, next_page, draw),
                     starter=NEXT_PAGE_STARTER, drawn=True)
    return q1, q2, top_statement_exercise(engine)


def top_statement_exercise(engine: Engine) -> Exercise:
    """q3, or, on a server without pg_stat_statements, a q3 whose check says it is skipped and why."""
    if (why := statements_missing(engine)) is not None:
        return Unavailable(name=Q3.name, question=Q3.text, shape=Q3.shape, hint_text=Q3.hint_text,
                           solution_code=Q3.solution_code, discussion=Q3.discussion, reference=lambda: None,
                           starter=TOP_STATEMENT_STARTER, reason=NO_STATEMENTS.format(why=why))
    return Q3.exercise(reference=lambda: dict.fromkeys(rounds(""), True),   # a constant: one busy run cannot change it
                       evaluate=lambda top: run_workload(engine, top), starter=TOP_STATEMENT_STARTER)
