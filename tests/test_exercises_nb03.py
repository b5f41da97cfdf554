"""Notebook 03's exercises: reference and printed solutions pass, known-wrong and lesson-breaking answers fail."""

from __future__ import annotations

import pytest

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb03


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
    assert q1.verdict("create index on nb03.q1_posts (user_id, created_at);") == (CORRECT, None)
    assert q2.verdict(nb03.keyset_reference) == (CORRECT, None)
    assert q3.verdict(nb03.top_reference) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "select": select, "table": table, "column": column, "tuple_": tuple_}
    for exercise in (q1, q2, q3):
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


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
    busiest, quiet = nb03.users_to_check(engine)
    assert nb03.index_verdict(engine, "CREATE INDEX ON q1_posts (user_id)")["no Sort node"] is False
    cases = [("CREATE INDEX ON q1_posts (user_id)", ""),
             ("CREATE INDEX ON q1_posts (created_at)", "q1_posts"),
             (f"CREATE INDEX ON q1_posts (user_id, created_at) WHERE user_id = {quiet}", "through an index"),
             ("CREATE INDEX ON q1_posts (created_at, user_id)", "q1_posts"),
             ("SET enable_sort = off", "one CREATE INDEX statement"),
             ("CREATE INDEX ON q1_posts (user_id, created_at); COMMIT", "one CREATE INDEX statement")]
    for wrong, why in cases:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong, diff)
    assert engine.connect().exec_driver_sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'q1_posts'").scalar() == 0


def test_nb03_q2_rejects_offset_and_a_cursor_without_the_tie_breaker(exercises):
    from sqlalchemy import column, select, table

    _, (_, q2, _) = exercises
    feed = table("feed", column("id"), column("created_at"))
    newest = select(feed.c.id, feed.c.created_at).order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(20)
    calls = []

    def offset_in_disguise(after):
        calls.append(after)
        return newest.offset(20 * (len(calls) - 1) % 80)

    def created_at_only(after):
        return newest if after is None else newest.where(feed.c.created_at < after[0])

    def or_equal(after):
        return newest if after is None else newest.where(feed.c.created_at <= after[0])

    def first_page_always(after):
        return newest

    for wrong, why in [(offset_in_disguise, "reads only its own 20 rows"), (created_at_only, "the same rows"),
                       (or_equal, "the same rows"), (first_page_always, "the same rows")]:
        calls.clear()
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb03_q3_rejects_cumulative_totals_mean_time_and_calls(exercises):
    _, (_, _, q3) = exercises

    def cumulative(before, after):
        return after.sort_values("total_exec_time", ascending=False)["query"].iloc[0]

    def by_mean(before, after):
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna(0)
        work["mean"] = (work.total_exec_time - work.total_exec_time_b) / (work.calls - work.calls_b).clip(lower=1)
        return work.sort_values("mean", ascending=False)["query"].iloc[0]

    def by_calls(before, after):
        work = after.merge(before, on="queryid", how="left", suffixes=("", "_b")).fillna(0)
        return work.assign(n=work.calls - work.calls_b).sort_values("n", ascending=False)["query"].iloc[0]

    for wrong in (cumulative, by_mean, by_calls):
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and "not the expected value" in diff, (wrong.__name__, diff)
