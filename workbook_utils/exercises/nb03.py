"""Exercises of notebook 03 (EXPLAIN ANALYZE): an index a plan uses, keyset pagination, the top statement."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

PAGE, PAGES, NEWEST = 20, 4, 5

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

# q3's workload: (SQL, times). HISTORY runs before the first snapshot; the rest between the two.
HISTORY = ("SELECT pg_sleep(0.2) FROM pg_roles WHERE rolname = current_user", 1)
WORKLOAD = [("SELECT count(*) FROM pg_class WHERE relname = 'nb03-q3'", 40),                           # most calls
            ("SELECT pg_sleep(0.06) FROM pg_namespace WHERE nspname = 'pg_catalog'", 1),               # slowest call
            ("SELECT pg_sleep(0.006) FROM pg_database WHERE datname = current_database()", 20)]        # most time
SNAPSHOT = """SELECT queryid, calls, total_exec_time, query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND userid = current_user::regrole
  AND toplevel"""


def build_tables(engine: Engine) -> None:
    """q1's posts without any index, and q2's feed (timestamps cut to the week, so many rows tie)."""
    with engine.begin() as conn:
        conn.connection.driver_connection.execute("""
            DROP TABLE IF EXISTS nb03.q1_posts, nb03.feed;
            CREATE TABLE q1_posts AS SELECT id, user_id, title, created_at FROM public.posts;
            CREATE TABLE feed AS SELECT id, date_trunc('week', created_at) AS created_at, title FROM public.posts;
            ALTER TABLE feed ADD PRIMARY KEY (id);
            CREATE INDEX feed_created_id ON feed (created_at, id);
            ANALYZE q1_posts; ANALYZE feed""")


def users_to_check(engine: Engine) -> list[int]:
    """The busiest author and a quiet one with at least 5 posts: an answer must serve both."""
    from sqlalchemy import text

    with engine.connect() as conn:
        counts = conn.execute(text("SELECT user_id FROM q1_posts GROUP BY user_id HAVING count(*) >= 5 "
                                   "ORDER BY count(*) DESC, user_id")).scalars().all()
    return [counts[0], counts[-1]]


def newest_posts(user_id: int) -> Any:
    from sqlalchemy import column, select, table

    posts = table("q1_posts", column("id"), column("user_id"), column("created_at"))
    return (select(posts.c.id).where(posts.c.user_id == user_id)
            .order_by(posts.c.created_at.desc()).limit(NEWEST))


def index_verdict(engine: Engine, ddl: Any) -> dict[str, bool]:
    """Create the learner's index in a transaction (rolled back), then read the plans of two users' newest posts."""
    from .. import plans

    statement = str(ddl).strip().rstrip(";")
    if ";" in statement or not statement.lower().startswith("create index"):
        raise ValueError("give one CREATE INDEX statement")
    users = users_to_check(engine)
    with engine.connect() as conn:
        expected = [conn.execute(newest_posts(u)).scalars().all() for u in users]
        conn.exec_driver_sql(statement.replace("%", "%%"))
        found = [plans.explain(conn, newest_posts(u)) for u in users]
        rows = [conn.execute(newest_posts(u)).scalars().all() for u in users]
        conn.rollback()
    return {"each plan reads q1_posts through an index": all(plans.indexes(p) for p in found),
            "no Sort node": all("Sort" not in plans.node_types(p) for p in found),
            f"at most {NEWEST} rows read per user": all(plans.summary(p)["rows read by scans"] <= NEWEST
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


def keyset_verdict(engine: Engine, next_page: Callable[[Any], Any]) -> dict[str, bool]:
    """Walk PAGES pages with the learner's function, each cursor the last row seen; compare with OFFSET's pages."""
    from .. import plans

    with engine.connect() as conn:
        after, pages, statement = None, [], None
        for _ in range(PAGES):
            statement = next_page(after)
            rows = [(r[0], r[1]) for r in conn.execute(statement).all()]
            pages.append(rows)
            after = (rows[-1][1], rows[-1][0]) if rows else None
        expected = [[(r[0], r[1]) for r in conn.execute(offset_page(p)).all()] for p in range(1, PAGES + 1)]
        plan = plans.explain(conn, statement)
    return {f"the same rows as OFFSET on pages 1-{PAGES}": pages == expected,
            f"page {PAGES} reads only its own {PAGE} rows": plans.summary(plan)["rows read by scans"] <= PAGE}


def snapshot(engine: Engine) -> pd.DataFrame:
    """pg_stat_statements for this database and role (what section 10 reads)."""
    import pandas as pd
    from sqlalchemy import text

    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(text(SNAPSHOT)).mappings().all())


def run_workload(engine: Engine, top: Callable[[pd.DataFrame, pd.DataFrame], Any]) -> Any:
    """Run q3's workload between two snapshots and hand both to `top`."""
    with engine.connect() as conn:
        conn.exec_driver_sql(HISTORY[0]).all()
    before = snapshot(engine)
    with engine.connect() as conn:
        for sql, times in WORKLOAD:
            for _ in range(times):
                conn.exec_driver_sql(sql).all()
    return top(before, snapshot(engine))


def top_reference(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Reference for q3: the difference of the two snapshots by queryid (new statements count from zero)."""
    work = after.merge(before, on="queryid", how="left", suffixes=("", "_before")).fillna({"total_exec_time_before": 0})
    work["total"] = work["total_exec_time"] - work["total_exec_time_before"]
    return work.sort_values("total", ascending=False)["query"].iloc[0]


def load(wb: Workbook, engine: Engine) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 03, on tables of the scratch schema (`engine` puts nb03 first on its search_path)."""
    build_tables(engine)
    q1 = Exercise(
        name="q1",
        question=f"The profile page shows a user's {NEWEST} newest posts: SELECT id FROM q1_posts WHERE user_id = :u "
                 f"ORDER BY created_at DESC LIMIT {NEWEST}. q1_posts has no index. Give one CREATE INDEX statement "
                 f"after which the plan, for any author, reads only those {NEWEST} rows through the index, with no "
                 "Sort node.",
        reference=lambda: index_verdict(engine, "CREATE INDEX ON q1_posts (user_id, created_at)"),
        hint_text="An index on user_id finds the rows but not in order; a B-tree on two columns is sorted by the "
                  "second within each value of the first.",
        solution_code='q1.check("CREATE INDEX q1_posts_user_created ON q1_posts (user_id, created_at DESC)")',
        evaluate=lambda ddl: index_verdict(engine, ddl),
    )
    q2 = Exercise(
        name="q2",
        question=f"feed(id, created_at) is paged newest first, {PAGE} rows a page, ordered by (created_at, id); many "
                 "rows share a created_at. Fix next_page(after) so that, given the (created_at, id) of the last row "
                 "shown, it returns the next page: the same rows as OFFSET would, but reading only that page's rows.",
        reference=lambda: keyset_verdict(engine, keyset_reference),
        hint_text="Filter on where the last page ended, with both columns compared as one row value: "
                  "tuple_(a, b) < tuple_(x, y). Comparing created_at alone skips rows that tie with the last one.",
        solution_code="def next_page(after):\n"
                      "    feed = table('feed', column('id'), column('created_at'))\n"
                      "    stmt = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), "
                      "feed.c.id.desc()).limit(20)\n"
                      "    if after is None:\n        return stmt\n"
                      "    return stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))\n\n"
                      "q2.check(next_page)",
        evaluate=lambda next_page: keyset_verdict(engine, next_page),
        starter=NEXT_PAGE_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="top_statement(before, after) gets two pg_stat_statements snapshots of this database and role "
                 "(DataFrames: queryid, calls, total_exec_time, query) taken around a piece of work. Return the "
                 "query text of the statement that spent the most total time in that work.",
        reference=lambda: run_workload(engine, top_reference),
        hint_text="Totals count since the statistics were reset: subtract `before` from `after` by queryid "
                  "(a statement first seen in between is missing from `before`: it started at 0).",
        solution_code="def top_statement(before, after):\n"
                      "    work = after.merge(before, on='queryid', how='left', suffixes=('', '_before'))\n"
                      "    work['total'] = work['total_exec_time'] - work['total_exec_time_before'].fillna(0)\n"
                      "    return work.sort_values('total', ascending=False)['query'].iloc[0]\n\n"
                      "q3.check(top_statement)",
        evaluate=lambda top: run_workload(engine, top),
        starter=TOP_STATEMENT_STARTER,
    )
    return q1, q2, q3
