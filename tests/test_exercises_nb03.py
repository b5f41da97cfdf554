"""Notebook 03's exercises: reference and printed solutions pass, known-wrong and lesson-breaking answers fail."""

from __future__ import annotations

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb03
from workbook_utils.exercises.draws import Draw


@pytest.fixture(scope="module")
def exercises():
    from workbook_utils import setup

    wb = setup("03")
    engine = wb.make_engine(connect_args={"options": "-c search_path=nb03,public"})
    yield engine, nb03.load(wb, engine)
    wb.close()


def test_nb03_reference_and_printed_solutions_pass(exercises, capsys):
    from sqlalchemy import column, select, table, tuple_

    engine, (q1, q2, q3) = exercises
    for exercise in (q1, q2, q3):   # the reference itself meets every claim its checker makes
        assert exercise.expected and all(value is True for value in exercise.expected.values()), exercise.expected
    assert q1.verdict("create index on nb03.q1_posts (user_id, created_at);") == (CORRECT, None)
    assert [q.text for q in nb03.QUESTIONS] == [q1.question, q2.question, q3.question]
    assert q2.verdict(nb03.keyset_reference) == (CORRECT, None)
    assert q3.verdict(nb03.top_reference) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "select": select, "table": table, "column": column, "tuple_": tuple_}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb03_q1_reference_serves_every_author(exercises, monkeypatch):
    """The check draws one author at random: the reference index must give every author the ordered index scan."""
    from workbook_utils import plans

    engine, _ = exercises
    with engine.connect() as conn:
        authors = conn.exec_driver_sql("SELECT DISTINCT user_id FROM q1_posts ORDER BY 1").scalars().all()
        counts = conn.exec_driver_sql("SELECT count(*) FROM q1_posts GROUP BY user_id").scalars().all()
        conn.exec_driver_sql(nb03.Q1_REFERENCE)
        shapes = {" → ".join(plans.node_types(plans.explain(conn, nb03.newest_posts(u)))) for u in authors}
        conn.rollback()
    assert len(authors) == nb03.Q1_AUTHORS and min(counts) > 10 * nb03.NEWEST and max(counts) > nb03.Q1_ROWS / 20
    assert shapes == {"Limit → Index Scan"}
    monkeypatch.setattr(nb03, "users_to_check", lambda *_: authors)
    assert all(nb03.index_verdict(engine, nb03.Q1_REFERENCE, Draw()).values())


def test_nb03_q1_accepts_other_right_answers(exercises):
    _, (q1, _, _) = exercises
    for right in ("CREATE UNIQUE INDEX ON q1_posts (user_id, created_at, id)",
                  "-- newest posts per author\nCREATE INDEX ON q1_posts (user_id, created_at);",
                  "create  index  posts_by_author on q1_posts(user_id, created_at desc)",
                  "/* the profile page */ CREATE INDEX ON q1_posts (user_id, created_at) INCLUDE (title)",
                  "\n  CREATE INDEX IF NOT EXISTS q1_newest ON nb03.q1_posts USING btree (user_id, created_at);\n",
                  'CREATE INDEX "q1;by author" ON q1_posts (user_id, created_at) -- a name with a ; in it',
                  "CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id IS NOT NULL",   # every author's posts
                  "CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id > 0"):
        assert q1.verdict(right) == (CORRECT, None), right


def test_nb03_not_attempted(exercises, tmp_path, monkeypatch):
    """A placeholder, and the starter functions handed back unchanged (defined in a file, as a cell would be)."""
    import importlib

    _, (q1, q2, q3) = exercises
    (tmp_path / "starters.py").write_text("from sqlalchemy import column, select, table\n"
                                          "from workbook_utils.exercises import ____\n"
                                          + nb03.NEXT_PAGE_STARTER + nb03.TOP_STATEMENT_STARTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    starters = importlib.import_module("starters")
    assert q1.verdict(____)[0] == NOT_ATTEMPTED
    assert q2.verdict(starters.next_page)[0] == NOT_ATTEMPTED
    assert q3.verdict(starters.top_statement)[0] == NOT_ATTEMPTED


def test_nb03_q1_rejects_indexes_that_do_not_serve_filter_and_order(exercises):
    engine, (q1, _, _) = exercises
    busiest, quiet, _ = nb03.users_to_check(engine, Draw())
    assert nb03.index_verdict(engine, "CREATE INDEX ON q1_posts (user_id)", Draw())["no Sort node"] is False
    partial = "partial index"
    cases = [("CREATE INDEX ON q1_posts (user_id)", "no Sort node"),
             ("CREATE INDEX ON q1_posts USING hash (user_id)", "no Sort node"),
             ("CREATE INDEX ON q1_posts (user_id) INCLUDE (created_at)", "no Sort node"),
             ("CREATE INDEX ON q1_posts (created_at)", "rows and"),          # walks every author's posts by date
             ("CREATE INDEX ON q1_posts (created_at, user_id)", "rows and"),  # 5 rows, but pages of other authors
             ("CREATE INDEX ON q1_posts (id, user_id, created_at)", "through an index"),
             (f"CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id = {quiet}", partial),
             (f"CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id IN ({busiest}, {quiet})", partial),
             (f"CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id <= {max(busiest, quiet)}", partial),
             (f"CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id <= {nb03.Q1_AUTHORS}", partial),  # not the next
             ("CREATE INDEX ON q1_posts (user_id, created_at) WHERE created_at < '2025-01-01'", partial),
             ("CREATE INDEX ON feed (created_at)", "through an index"),
             # every post's id is > 0, but `WHERE user_id = …` does not imply it: the planner cannot use the index (rvx
             # read it as right; it was told "partial index" because the check's made-up new post had id 0)
             ("CREATE INDEX ON q1_posts (user_id, created_at) WHERE id > 0", "through an index"),
             ("CREATE INDEX CONCURRENTLY ON q1_posts (user_id, created_at)", "CONCURRENTLY"),
             ("SET enable_sort = off", "one CREATE INDEX statement"),
             ("-- CREATE INDEX ON q1_posts (user_id, created_at)", "one CREATE INDEX statement"),
             ("CREATE INDEX ON q1_posts (user_id, created_at); COMMIT", "one CREATE INDEX statement"),
             ("CREATE INDEX ON q1_posts (user_id, created_at", "PostgreSQL cannot read your SQL")]
    for wrong, why in cases:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong, diff)
    assert "“at most 5 rows and 10 pages read per author” does not hold" in q1.verdict(cases[4][0])[1]
    assert q1.verdict(cases[6][0])[1].startswith("a partial index")      # told plainly, without "running … raised"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'q1_posts'").scalar() == 0
    with engine.begin() as conn:   # a good index made in the notebook does not carry a wrong answer
        conn.exec_driver_sql("CREATE INDEX q1_made_by_hand ON q1_posts (user_id, created_at)")
    try:
        status, diff = q1.verdict("CREATE INDEX ON q1_posts (user_id)")
        assert status == INCORRECT and diff.startswith("“no Sort node” does not hold [drawn: author = ")
        assert q1.verdict(nb03.Q1_REFERENCE) == (CORRECT, None)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX q1_made_by_hand")


def test_nb03_q2_rejects_each_wrong_family_on_its_own_claim(exercises):
    """Each wrong answer breaks the claim its family breaks, under conditions drawn afresh, and the check says so."""
    from sqlalchemy import and_, column, or_, select, table, text, tuple_

    engine, (_, q2, _) = exercises
    feed = table("feed", column("id"), column("created_at"))
    newest = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)
    calls = []

    def offset_in_disguise(after):   # counts its calls: right on the pages walked from the first one
        calls.append(after)
        return newest.offset(20 * (len(calls) - 1))

    def created_at_only(after):
        return newest if after is None else newest.where(feed.c.created_at < after[0])

    def or_equal(after):
        return newest if after is None else newest.where(feed.c.created_at <= after[0])

    def first_page_always(after):
        return newest

    def id_only(after):   # right within a week (ties come in id order); rvx: passed when the tie was the newest week
        return newest if after is None else newest.where(feed.c.id < after[1])

    def same_week_only(after):   # rvc: at scale small a page after the cursor never left its week
        return newest if after is None else newest.where(and_(feed.c.created_at == after[0], feed.c.id < after[1]))

    def id_below_in_older_weeks_too(after):   # rvc: skips older weeks' rows whose id is above the cursor's
        return newest if after is None else newest.where(and_(feed.c.created_at <= after[0], feed.c.id < after[1]))

    by_created_at = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc()).limit(20)

    def no_tie_breaker(after):   # right rows here only because the index hands ties over in id order
        return by_created_at if after is None else by_created_at.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    def ascending_tie_breaker(after):
        stmt = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id).limit(20)
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    def keyset_in_a_subquery(after):   # the ORDER BY inside; the query around it promises no order
        inner = nb03.keyset_reference(after).subquery()
        return select(inner.c.id, inner.c.created_at)

    ordered, same, tie, reads = ("every page ordered by created_at DESC, then id DESC (the outermost ORDER BY)",
                                 "the same rows as OFFSET on each page walked",
                                 "after a row that shares its created_at with others: the rows that follow it",
                                 nb03.READS_ONLY_ITS_PAGE)
    def portable_keyset(after):   # the right rows, but the Index Cond starts at the cursor's created_at
        if after is None:
            return newest
        return newest.where(and_(feed.c.created_at <= after[0], or_(feed.c.created_at < after[0], feed.c.id < after[1])))

    def positions_swapped(after):   # ORDER BY 1 DESC, 2 DESC: id first
        stmt = select(feed.c.id, feed.c.created_at).order_by(text("1 DESC, 2 DESC")).limit(20)
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    families = [(offset_in_disguise, reads), (positions_swapped, ordered), (created_at_only, tie), (or_equal, same),
                (first_page_always, same), (id_only, tie), (same_week_only, tie), (id_below_in_older_weeks_too, tie),
                (portable_keyset, reads),
                (no_tie_breaker, ordered), (ascending_tie_breaker, ordered), (keyset_in_a_subquery, ordered)]
    for wrong, claim in families:
        for _ in range(2):   # two draws: the family fails whatever was drawn
            calls.clear()
            verdict = nb03.keyset_verdict(engine, wrong, Draw())
            assert verdict[claim] is False, (wrong.__name__, verdict)
            calls.clear()
            status, diff = q2.verdict(wrong)
            assert status == INCORRECT and "does not hold" in diff and "seed=" in diff, (wrong.__name__, diff)

    def qualified_text_order(after):   # the ORDER BY is read from the SQL, however it was written
        stmt = (select(feed.c.id, feed.c.created_at).order_by(text('"feed".created_at DESC, feed.id DESC')).limit(20))
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    def text_cursor(after):            # the row comparison written as SQL text, with bound parameters
        if after is None:
            return newest
        return newest.where(text("(created_at, id) < (:c, :i)").bindparams(c=after[0], i=after[1]))

    def outer_order_around_a_subquery(after):   # a subquery is fine when the outer query orders the rows
        inner = nb03.keyset_reference(after).subquery()
        return select(inner.c.id, inner.c.created_at).order_by(inner.c.created_at.desc(), inner.c.id.desc())

    def created_at_listed_first(after):   # rows are read by column name: any order of the select's columns
        stmt = select(feed.c.created_at, feed.c.id).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    def by_position(after):               # ORDER BY 2 DESC, 1 DESC: the columns listed there
        stmt = select(feed.c.id, feed.c.created_at).order_by(text("2 DESC, 1 DESC")).limit(20)
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) < tuple_(*after))

    def up_to_the_cursor_but_not_it(after):   # rve (stop 30): reads the cursor's row, then filters it out
        stmt = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)
        return stmt if after is None else stmt.where(tuple_(feed.c.created_at, feed.c.id) <= tuple_(*after),
                                                     feed.c.id != after[1])

    for right in (qualified_text_order, text_cursor, outer_order_around_a_subquery, created_at_listed_first, by_position,
                  up_to_the_cursor_but_not_it):
        for _ in range(2):
            assert q2.verdict(right) == (CORRECT, None), right.__name__


def test_nb03_q2_says_why_a_portable_keyset_fails_and_which_columns_it_reads(exercises):
    """The row comparison's written-out form returns the right rows: the message says what it reads too much."""
    from sqlalchemy import and_, column, literal_column, or_, select, table

    _, (_, q2, _) = exercises
    feed = table("feed", column("id"), column("created_at"))
    newest = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)

    def portable_keyset(after):
        if after is None:
            return newest
        return newest.where(and_(feed.c.created_at <= after[0], or_(feed.c.created_at < after[0], feed.c.id < after[1])))

    status, diff = q2.verdict(portable_keyset)
    assert status == INCORRECT and diff.startswith(f"“{nb03.READS_ONLY_ITS_PAGE}” does not hold"), diff
    assert "the cursor's created_at" in diff and "created_at <= :c AND (created_at < :c OR id < :i)" in q2.discussion

    def unnamed_columns(after):
        return select(feed.c.id.label("post"), literal_column("created_at")).select_from(feed).limit(20)

    status, diff = q2.verdict(unnamed_columns)
    assert status == INCORRECT
    assert diff.startswith("next_page's rows should have columns named id and created_at, not post, created_at [drawn")


def test_nb03_q2_draws_a_cursor_inside_a_tie_and_replays_it(exercises):
    engine, (_, q2, _) = exercises
    draw = Draw(7)
    created_at, cursor_id = nb03.tie_cursor(engine, draw)
    with engine.connect() as conn:
        ids = conn.exec_driver_sql("SELECT id FROM feed WHERE created_at = %(c)s ORDER BY id", {"c": created_at}).scalars().all()
    assert len(ids) >= 3 and ids[0] < cursor_id < ids[-1] and ids.index(cursor_id) < nb03.PAGE   # the page crosses a week
    with engine.connect() as conn:   # a newer week holds a smaller id: a cursor on the id alone returns that row first
        assert conn.exec_driver_sql("SELECT min(id) FROM feed WHERE created_at > %(c)s", {"c": created_at}).scalar() < cursor_id
    with engine.connect() as conn:   # ten pages of older rows: enough that the planner walks the index
        older = conn.exec_driver_sql("SELECT count(*) FROM feed WHERE created_at < %(c)s", {"c": created_at}).scalar()
    assert older >= 10 * nb03.PAGE
    for seed in (41031, 74824, 26846, 36449):   # drew runs near the end, where the reference read and sorted them all
        assert all(nb03.keyset_verdict(engine, nb03.keyset_reference, Draw(seed)).values()), seed
    assert nb03.tie_cursor(engine, Draw(7)) == (created_at, cursor_id)
    assert 3 <= Draw(7).integer("pages", 3, 7) <= 7


def test_nb03_q3_is_skipped_in_one_line_without_pg_stat_statements(exercises, capsys):
    """A search_path without the extension's schema hides the view, as a server without it would: the check says
    it is skipped and why, instead of blaming the answer."""
    from sqlalchemy import create_engine

    engine, (_, _, q3) = exercises
    assert nb03.statements_missing(engine) is None and not isinstance(q3, nb03.Unavailable)
    hidden = create_engine(engine.url, connect_args={"options": "-c search_path=nb03"})
    try:
        skipped = nb03.top_statement_exercise(hidden)
        assert isinstance(skipped, nb03.Unavailable)
        skipped.check(nb03.top_reference)
        out = capsys.readouterr().out
        assert out.startswith("Skipped: pg_stat_statements is not installed here (relation \"pg_stat_statements\" "
                              "does not exist)") and out.count("\n") == 1, out
        assert skipped.verdict(nb03.top_reference)[0] == NOT_ATTEMPTED
        skipped.hint()
        assert "subtract" in capsys.readouterr().out
    finally:
        hidden.dispose()


def test_nb03_q3_rejects_wrong_differences_and_fixed_answers(exercises):
    """Each wrong answer fails; a fixed text fails a second check too: the statements are new to each check."""
    from workbook_utils.exercises import WrongKind

    _, (_, _, q3) = exercises

    def cumulative(before, after):
        return after.sort_values("total_exec_time", ascending=False)["query"].iloc[0]

    def by_mean(before, after):
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna({"calls_b": 0, "total_exec_time_b": 0})
        work["mean"] = (work.total_exec_time - work.total_exec_time_b) / (work.calls - work.calls_b).clip(lower=1)
        return work.sort_values("mean", ascending=False)["query"].iloc[0]

    def by_calls(before, after):
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna({"calls_b": 0, "total_exec_time_b": 0})
        return work.assign(n=work.calls - work.calls_b).sort_values("n", ascending=False)["query"].iloc[0]

    def without_fillna(before, after):   # a statement first seen in between gets NaN, sorted last
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b"))
        return work.assign(t=work.total_exec_time - work.total_exec_time_b).sort_values("t", ascending=False)["query"].iloc[0]

    def inner_join(before, after):       # drops the statements first seen in between
        work = after.merge(before, on="queryid", suffixes=("", "_b"))
        return work.assign(t=work.total_exec_time - work.total_exec_time_b).sort_values("t", ascending=False)["query"].iloc[0]

    def newest_only(before, after):      # only statements first seen in between
        new = after[~after["queryid"].isin(before["queryid"])]
        return new.sort_values("total_exec_time", ascending=False)["query"].iloc[0]

    def cumulative_of_those_that_ran(before, after):   # rvx: passed the first check on a fresh server
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna({"calls_b": 0})
        return work[work.calls > work.calls_b].sort_values("total_exec_time", ascending=False)["query"].iloc[0]

    def calls_times_mean(before, after):   # rvh (stop 31): the calls in between times the mean over all time
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna({"calls_b": 0})
        work["t"] = (work.calls - work.calls_b) * work.total_exec_time / work.calls
        return work.sort_values("t", ascending=False)["query"].iloc[0]

    def hard_coded_top(before, after):
        return "SELECT pg_sleep($1) FROM pg_database WHERE datname = current_database()"

    def hard_coded_slow(before, after):
        return "SELECT pg_sleep($1) FROM pg_namespace WHERE nspname = $2"

    for wrong in (cumulative, by_mean, by_calls, without_fillna, inner_join, newest_only, cumulative_of_those_that_ran,
                  calls_times_mean, hard_coded_top, hard_coded_slow):
        for attempt in range(2 if wrong.__name__.startswith("hard_coded") else 1):  # a text seen once fails again
            status, diff = q3.verdict(wrong)
            assert status == INCORRECT and "does not hold" in diff, (wrong.__name__, attempt, diff)

    status, diff = q3.verdict(lambda before, after: after.head(1))
    assert status == INCORRECT and diff == "top_statement should return the query text (a str), not DataFrame"
    assert issubclass(WrongKind, TypeError)


def test_nb03_q3_a_disturbed_round_is_run_again_then_judged_on_what_it_measured(exercises, monkeypatch):
    """rvh (stop 31): the reference, run once while another notebook loaded the server, came out wrong and failed every
    later check. Now the expected verdict is a constant, and a round whose measured top is not the designed one (here
    by design: MANY's one cheap call is not the top) is run again, on a table of a new name (its statements new
    again), then judged on the measured top."""
    engine = exercises[0]
    runs, tables = [], []
    work = [(nb03.SLOW, 1), (nb03.MANY, 1)]
    monkeypatch.setattr(nb03, "rounds", lambda fresh: tables.append(fresh) or {"disturbed": (work, nb03.MANY),
                                                                               "quiet": (work, nb03.SLOW)})
    with engine.begin() as conn:
        for sql in (nb03.SLOW, nb03.MANY):
            conn.exec_driver_sql(sql).all()

    def top(before, after):
        runs.append(after)
        return nb03.top_reference(before, after)

    assert nb03._judged_round(engine, top, "disturbed")
    assert len(runs) == 1 and len(set(tables)) == 3   # three runs, each on a new table; the answer asked once
    assert not nb03._judged_round(engine, lambda before, after: "SELECT 1", "quiet")
