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


SHAPES = {  # plans where a child's work is counted elsewhere than under its parent: an InitPlan, a CTE, a SubPlan
    "a CTE read by a CTE Scan": """WITH top AS MATERIALIZED (SELECT id FROM big ORDER BY pad DESC LIMIT 3)
                                   SELECT * FROM top t JOIN notes n ON n.id = t.id % 4""",
    "an InitPlan read below its parent": "SELECT * FROM big WHERE id > (SELECT max(id) - 5 FROM big WHERE pad > 'w') "
                                         "ORDER BY pad LIMIT 3",
    "a SubPlan run per row": "SELECT n.id, (SELECT count(*) FROM big b WHERE b.id <= n.id) FROM notes n",
    "a parallel scan": "SELECT count(*) FROM big WHERE pad LIKE 'y%'",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_buffers_and_times_are_each_nodes_own(engine, shape):
    """Each node's buffers and time exclude its children's, wherever their work was counted: none is negative, and
    the nodes' own buffers add up to the plan's total (EXPLAIN's top node includes every other)."""
    from workbook_utils import plans

    with engine.connect() as conn:
        conn.exec_driver_sql("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
        plan = plans.explain(conn, SHAPES[shape].replace("%", "%%"), {})
    frame, top = plans.nodes(plan), plan["Plan"]
    total = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert (frame["buffers"] >= 0).all() and (frame["self ms"] >= 0).all()
    assert frame["buffers"].sum() == total, frame[["node", "role", "buffers"]]
    assert frame["self ms"].sum() == pytest.approx(top["Actual Total Time"], rel=0.05, abs=0.05)
    if shape == "a CTE read by a CTE Scan":
        assert frame.loc[frame["node"] == "CTE Scan", "buffers"].iloc[0] == 0   # it reads the CTE's rows, not pages


def test_an_init_plan_is_charged_to_the_node_that_reads_it_on_every_version():
    """PostgreSQL 17+ names an InitPlan's value `(InitPlan 1).col1`; 15 and 16 name it `$0` ("returns $0")."""
    from workbook_utils import plans

    def plan(init_name: str, condition: str) -> dict:
        scan = {"Node Type": "Seq Scan", "Filter": f"(user_id = {condition})", "Actual Total Time": 3.0,
                "Actual Loops": 1, "Plan Rows": 1, "Shared Hit Blocks": 30, "Shared Read Blocks": 2}
        init = {"Node Type": "Result", "Parent Relationship": "InitPlan", "Subplan Name": init_name,
                "Actual Total Time": 1.0, "Actual Loops": 1, "Plan Rows": 1, "Shared Hit Blocks": 10}
        sort = {"Node Type": "Sort", "Parent Relationship": "Outer", "Actual Total Time": 4.0, "Actual Loops": 1,
                "Plan Rows": 1, "Shared Hit Blocks": 32, "Plans": [{**scan, "Parent Relationship": "Outer"}]}
        return {"Plan": {"Node Type": "Limit", "Actual Total Time": 4.5, "Actual Loops": 1, "Plan Rows": 1,
                         "Shared Hit Blocks": 32, "Plans": [init, sort]}}

    for init_name, condition in (("InitPlan 1", "(InitPlan 1).col1"), ("InitPlan 1 (returns $0)", "$0")):
        frame = plans.nodes(plan(init_name, condition))
        assert list(frame["buffers"]) == [0, 10, 0, 22], init_name          # Limit, InitPlan, Sort, Seq Scan
        assert list(frame["self ms"]) == pytest.approx([0.5, 1.0, 1.0, 2.0]), init_name
    unread = plans.nodes(plan("InitPlan 1 (returns $0)", "$10"))           # $10 is another value than $0
    assert list(unread["buffers"]) == [0, 10, 0, 32]   # read by no node it can name: charged to the Limit, clipped at 0


def test_parameters_reach_the_server_converted_by_their_types(engine):
    """`compiled.params` are the values before their types convert them: a dict for JSON cannot be sent as it is,
    and a TypeDecorator's conversion would be skipped. The plan must be the one for the values the application sends."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, TypeDecorator, select
    from sqlalchemy.dialects.postgresql import JSONB

    from workbook_utils import plans

    class Lowered(TypeDecorator):
        impl = String
        cache_ok = True

        def process_bind_param(self, value, dialect):
            return value.lower()

    table = Table("typed", MetaData(), Column("id", Integer), Column("doc", JSONB), Column("email", Lowered))
    by_doc = select(table.c.id).where(table.c.doc.contains({"a": 1}))
    by_email = select(table.c.id).where(table.c.email == "Ada@Example.COM")
    with engine.connect() as conn:
        table.create(conn)
        assert plans.node_types(plans.explain(conn, by_doc)) == ["Seq Scan"]
        assert "ada@example.com" in plans.explain(conn, by_email)["Plan"]["Filter"]
        conn.rollback()
