"""plans.py on real plans from the server: PostgreSQL 18's fractional rows, parallel workers, a CTE, a subplan."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def engine():
    from workbook_utils import setup

    wb = setup("03")
    engine = wb.make_engine(connect_args={"options": "-c search_path=nb03,public"})
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g;"
                             " CREATE TABLE notes AS SELECT generate_series(1, 3) AS id; ANALYZE big; ANALYZE notes")
    yield engine
    wb.close()


def test_a_statement_compiled_for_postgresql_with_literals_that_break_text(engine):
    from sqlalchemy import select

    from workbook_utils import plans
    from workbook_utils.models import User

    stmt = select(User.id).where(User.email.regexp_match(r"^user4\d@") | (User.bio == "Dr. :x 100%"))
    plan = plans.explain(engine, stmt)
    assert plans.node_types(plan) == ["Seq Scan"] and plan["Plan"]["Relation Name"] == "users"
    assert plans.summary(plan)["rows returned"] == 10


def test_dml_is_rolled_back_with_an_engine_and_with_a_connection(engine):
    from sqlalchemy import column, delete, table

    from workbook_utils import plans

    notes = table("notes", column("id"))
    count = "SELECT count(*) FROM notes"
    assert plans.explain(engine, delete(notes))["Plan"]["Plans"][0]["Actual Rows"] == 3
    with engine.connect() as conn:
        plans.explain(conn, "DELETE FROM notes WHERE id = 1")
        assert conn.exec_driver_sql(count).scalar() == 3     # the savepoint was rolled back, the transaction goes on
    with engine.connect() as conn:
        assert conn.exec_driver_sql(count).scalar() == 3


def test_pg18_rows_are_fractional_and_estimates_integers(engine):
    from workbook_utils import plans

    plan = plans.explain(engine, "SELECT * FROM notes WHERE id = 2")
    version = plans.explain(engine, "SELECT 1", analyze=False)  # a plan without ANALYZE has no actual rows
    assert "Actual Rows" not in version["Plan"]
    assert isinstance(plan["Plan"]["Plan Rows"], int)
    frame = plans.nodes(plan)
    assert frame.loc[0, "actual rows"] == 1 and frame.loc[0, "removed by filter"] == 2


def test_parallel_plan_counts_rows_over_all_workers(engine):
    from workbook_utils import plans

    with engine.connect() as conn:
        conn.exec_driver_sql("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        plan = plans.explain(conn, "SELECT count(*) FROM big WHERE pad LIKE 'y%%'", {})
    frame = plans.nodes(plan)
    assert "Gather" in set(frame["node"]) or "Gather Merge" in set(frame["node"])
    scan = frame[frame["node"] == "Parallel Seq Scan"].iloc[0]
    assert scan["loops"] > 1
    assert abs(scan["removed by filter"] - 200_000) <= scan["loops"]   # per-loop averages, multiplied back
    assert plans.summary(plan)["rows read by scans"] == pytest.approx(200_000, abs=10)


def test_cte_subplan_and_self_time(engine):
    from workbook_utils import plans

    plan = plans.explain(engine, """
        WITH top AS MATERIALIZED (SELECT id FROM big ORDER BY id DESC LIMIT 3)
        SELECT t.id, (SELECT count(*) FROM notes n WHERE n.id <= t.id % 4) FROM top t""")
    frame = plans.nodes(plan)
    assert "top" in set(frame["relation"])                         # the CTE Scan names its CTE
    subplan = frame[frame["role"].astype(str).str.startswith("SubPlan")]
    assert len(subplan) == 1 and subplan.iloc[0]["loops"] == 3      # run once per row
    assert (frame["self ms"] >= 0).all()
    assert frame["self ms"].sum() == pytest.approx(plan["Plan"]["Actual Total Time"], rel=0.05, abs=0.05)


def test_compare_and_draw(engine):
    import matplotlib

    matplotlib.use("Agg")
    from workbook_utils import plans

    before = plans.explain(engine, "SELECT * FROM big WHERE id = 7")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS big_id ON big (id)")
    after = plans.explain(engine, "SELECT * FROM big WHERE id = 7")
    table = plans.compare(before, after)
    assert table.loc["indexes", "after"] == "big_id" and table.loc["indexes", "before"] == "—"
    assert table.loc["rows read by scans", "before"] >= 200_000 - 3 and table.loc["rows read by scans", "after"] == 1
    axes = plans.draw_pair(before, after)
    assert len(axes) == 2 and "big_id" in axes[1].get_yticklabels()[0].get_text()


def test_aggregates_are_named_as_explain_text_names_them(engine):
    from workbook_utils import plans

    grouped = "SELECT id, count(*) FROM notes GROUP BY id"
    assert plans.node_types(plans.explain(engine, "SELECT count(*) FROM notes"))[0] == "Aggregate"
    assert plans.node_types(plans.explain(engine, grouped))[0] == "HashAggregate"
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_hashagg = off")
        assert plans.node_types(plans.explain(conn, grouped))[0] == "GroupAggregate"
        conn.exec_driver_sql("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        parallel = plans.node_types(plans.explain(conn, "SELECT count(*) FROM big", {}))
    assert parallel[0] == "Finalize Aggregate" and "Partial Aggregate" in parallel
    assert plans.name({"Node Type": "Aggregate", "Strategy": "Mixed"}) == "MixedAggregate"


def test_labels_leave_out_what_a_node_does_not_have(engine):
    """A DataFrame stores a node without an index as NaN, which is true: no "using nan on nan [nan]"."""
    import pandas as pd

    from workbook_utils import plans

    plan = plans.explain(engine, "SELECT * FROM notes a JOIN big b ON b.id = a.id ORDER BY a.id LIMIT 2")
    labels = [plans.label(row) for _, row in plans.nodes(plan).iterrows()]
    assert not any("nan" in text or "None" in text for text in labels), labels
    assert labels[0] == "Limit" and "Seq Scan on notes" in labels
    nan = float("nan")
    assert plans.label(pd.Series({"node": "Nested Loop", "index": nan, "relation": nan, "role": nan})) == "Nested Loop"
    assert plans.label(pd.Series({"node": "Index Scan", "index": "big_id", "relation": "big", "role": "SubPlan 1"})) \
        == "Index Scan using big_id on big  [SubPlan 1]"
