"""monitoring_lab.py (notebook 08's harness) against the real server: overlapping requests, the workload and its
pg_stat_statements difference, a blocked event loop seen from outside, dead tuples kept and removed."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from workbook_utils import monitoring, monitoring_lab


@pytest.fixture(scope="module")
def wb():
    from workbook_utils import setup

    workbook = setup("08")
    with workbook.engine.begin() as conn:
        conn.execute(text("""
            CREATE TABLE IF NOT EXISTS nb08.visits (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, path text NOT NULL);
            CREATE TABLE IF NOT EXISTS nb08.counters (id int PRIMARY KEY, n int NOT NULL)"""))
    yield workbook
    workbook.close()


@pytest.fixture(scope="module")
def engine(wb):
    return wb.make_engine(pool_size=4, max_overflow=0, connect_args={"options": "-c search_path=nb08,public "
                                                                                 "-c statement_timeout=10s"})


def visits(wb) -> int:
    return int(wb.query("SELECT count(*) AS n FROM nb08.visits")["n"][0])


def test_overlapping_requests_are_counted_each_and_one_visit_inserts_one_row(wb, engine):
    def make_app(barrier):
        app = FastAPI()
        monitoring.track_requests(app)
        return monitoring_lab.add_visit_and_work(app, engine, barrier)

    remove = monitoring.count_queries(engine)
    try:
        counts, inserted = monitoring_lab.overlapping_counts(make_app, (2, 5, 3), lambda: visits(wb))
    finally:
        remove()
    assert counts.to_dict() == {2: 2, 5: 5, 3: 3} and inserted == 1


def test_workload_rows_and_the_difference_of_two_snapshots(wb, engine):
    requests, pool_use = monitoring_lab.run_workload(monitoring.feed_app(engine), engine,
                                                     ["/feed?limit=3", "/feed-eager?limit=3", "/stats"], clients=2)
    assert sorted(requests["path"]) == ["/feed", "/feed-eager", "/stats"]
    assert requests.set_index("path")["queries"].to_dict() == {"/feed": 4, "/feed-eager": 2, "/stats": 8}
    assert isinstance(pool_use, pd.Series)
    before = pd.DataFrame({"queryid": [1, 2], "calls": [3, 5], "total_exec_time": [3.0, 10.0], "query": ["a", "b"]})
    after = pd.DataFrame({"queryid": [1, 2, 3], "calls": [3, 7, 2], "total_exec_time": [3.0, 14.0, 1.0],
                          "query": ["a", "b", "c"]})
    diff = monitoring_lab.difference(before, after).set_index("queryid")
    assert diff["calls"].to_dict() == {2: 2, 3: 2} and diff["mean ms"].to_dict() == {2: 2.0, 3: 0.5}


def test_a_blocking_health_check_stops_the_ping_and_a_plain_def_does_not(wb):
    def app(blocking):
        health_app = FastAPI()

        def read():
            with wb.engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM nb08.visits"))
            return {"ok": True}

        if blocking:
            @health_app.get("/health")
            async def health_async():
                return read()
        else:
            @health_app.get("/health")
            def health():
                return read()

        @health_app.get("/ping")
        async def ping():
            return "pong"
        return health_app

    libpq = wb.url.replace("+psycopg", "")
    blocked = monitoring_lab.ping_while_health_waits(app(True), libpq, wb.app_name)
    free = monitoring_lab.ping_while_health_waits(app(False), libpq, wb.app_name)
    assert blocked["/health was waiting"] and free["/health was waiting"]
    assert not blocked["ping answered while /health waited"] and free["ping answered while /health waited"]


def test_vacuum_removes_the_dead_tuples_a_burst_left(wb):
    with wb.engine.begin() as conn:
        conn.execute(text("TRUNCATE nb08.counters; INSERT INTO nb08.counters SELECT g, 0 FROM generate_series(1, 50) g"))
    monitoring_lab.vacuum(wb)
    with wb.engine.connect() as conn:
        conn.execute(text("UPDATE nb08.counters SET n = n + 1"))
        conn.commit()
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
    assert monitoring_lab.dead_tuples(wb) >= 50
    monitoring_lab.vacuum(wb)
    assert monitoring_lab.dead_tuples(wb) == 0


def test_the_server_log_prints_bound_parameters_unless_log_parameter_max_length_is_0(room_server, wb):
    """On the second server (the room's PostgreSQL 15) and on the embedded 18, as their superusers."""
    from workbook_utils import server, urls

    where = [(room_server.admin_url(), room_server.log)] if room_server.cluster else []
    where.append((urls.with_database(urls.admin_url(), "postgres"), server.pgdata() / "server.log"))
    for url, log in where:
        shown = monitoring_lab.logged_parameters(url, log, "4111 1111 1111 1111", max_length=-1)
        hidden = monitoring_lab.logged_parameters(url, log, "4111 1111 1111 1111", max_length=0)
        assert len(shown) == 2 and "$1 = '4111 1111 1111 1111'" in shown[1], (url, shown)  # "parameters:" on 15
        assert len(hidden) == 1 and "4111" not in hidden[0] and "execute" in hidden[0], (url, hidden)


def test_running_query_sees_the_statement_while_it_runs(wb, engine):
    seen = monitoring_lab.running_query(engine, wb.url.replace("+psycopg", ""), "SELECT pg_sleep(0.2) /* marked */")
    assert seen.startswith("SELECT pg_sleep(0.2)") and "marked" in seen


def test_opentelemetry_instruments_sqlalchemy_2_1_only_with_skip_dep_check(wb, engine):
    """What notebook 08 teaches of opentelemetry-instrumentation-sqlalchemy (it declares sqlalchemy < 2.1): with the
    flag, a span per statement under the request's, the trace id in pg_stat_activity, the pool as a metric."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider, meter_provider = TracerProvider(), MeterProvider(metric_readers=[reader])
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = SQLAlchemyInstrumentor()
    assert instrumentor.instrument(engine=engine, tracer_provider=tracer_provider) is None
    assert not instrumentor.is_instrumented_by_opentelemetry
    instrumentor.instrument(engine=engine, tracer_provider=tracer_provider, meter_provider=meter_provider,
                            enable_commenter=True, skip_dep_check=True)
    try:
        with tracer_provider.get_tracer("test").start_as_current_span("request") as request:
            seen = monitoring_lab.running_query(engine, wb.url.replace("+psycopg", ""), "SELECT pg_sleep(0.2)")
    finally:
        instrumentor.uninstrument()
    trace_id = request.get_span_context().trace_id
    assert f"traceparent='00-{trace_id:032x}-" in seen, seen
    statements = [s for s in spans.get_finished_spans() if "db.statement" in s.attributes]
    assert [s.attributes["db.statement"] for s in statements] == ["SELECT pg_backend_pid()", "SELECT pg_sleep(0.2)"]
    assert all(s.context.trace_id == trace_id for s in statements)
    metrics = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    assert "db.client.connections.usage" in {m.name for m in metrics}
