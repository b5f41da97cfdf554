"""Notebook 08's exercises: references and printed solutions pass; wrong answers and lesson-breaking ones fail."""

from __future__ import annotations

import pytest
from prometheus_client import Gauge

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb08


@pytest.fixture(scope="module")
def exercises():
    from workbook_utils import setup

    workbook = setup("08")
    yield nb08.load(workbook)
    workbook.close()


def _starter(source, name, tmp_path):
    """The starter function, loaded from a file (so its source can be read back, as from a notebook cell)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text("from prometheus_client import Gauge\n" + source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_nb08_references_and_printed_solutions_pass(exercises, capsys):
    q1, q2, q3 = exercises
    assert q1.verdict(nb08.n_plus_one_reference) == (CORRECT, None)
    assert q2.verdict(nb08.gauges_reference) == (CORRECT, None)
    assert q3.verdict(nb08.end_blocker_reference) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "Gauge": Gauge}
    for exercise in exercises:
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb08_starters_are_not_attempted_and_are_wrong(exercises, tmp_path):
    q1, q2, q3 = exercises
    for q, source, name in [(q1, nb08.N_PLUS_ONE_STARTER, "n_plus_one_endpoint"),
                            (q2, nb08.GAUGES_STARTER, "pool_gauges"), (q3, nb08.BLOCKER_STARTER, "end_blocker")]:
        starter = _starter(source, name, tmp_path)
        assert q.verdict(starter)[0] == NOT_ATTEMPTED
        namespace = {"Gauge": Gauge}
        exec(source, namespace)   # the same code typed anew is judged, and it is wrong
        assert q.verdict(namespace[name])[0] == INCORRECT, name


def test_nb08_q1_rejects_busiest_heaviest_worst_and_hard_coded_endpoints(exercises):
    q1 = exercises[0]
    for wrong, why in [
        (lambda r: r.groupby("path")["queries"].sum().idxmax(), "N+1 endpoint"),        # the busiest
        (lambda r: r.groupby("path")["queries"].mean().idxmax(), "N+1 endpoint"),       # most queries per request
        (lambda r: r.loc[r["queries"].idxmax(), "path"], "N+1 endpoint"),               # the single worst request
        (lambda r: "/feed", "N+1 endpoint"),                                            # the demo's name
        (lambda r: r.groupby("path")["queries"].sum(), "as a string"),
        ("/feed", "pass your function"),
    ]:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, diff


def test_nb08_q2_rejects_stale_negative_and_misplaced_gauges(exercises):
    q2 = exercises[1]

    def stale(engine, registry):   # the sheet's: values set once (or every 10 s), not at scrape time
        pool = engine.pool
        Gauge("db_pool_checked_out", "", registry=registry).set(pool.checkedout())
        Gauge("db_pool_overflow", "", registry=registry).set(max(pool.overflow(), 0))
        Gauge("db_pool_size", "", registry=registry).set(pool.size())

    def negative_overflow(engine, registry):
        pool = engine.pool
        Gauge("db_pool_checked_out", "", registry=registry).set_function(pool.checkedout)
        Gauge("db_pool_overflow", "", registry=registry).set_function(pool.overflow)
        Gauge("db_pool_size", "", registry=registry).set_function(pool.size)

    def open_connections(engine, registry):   # "size" as the connections open, not pool_size
        pool = engine.pool
        Gauge("db_pool_checked_out", "", registry=registry).set_function(pool.checkedout)
        Gauge("db_pool_overflow", "", registry=registry).set_function(lambda: max(pool.overflow(), 0))
        Gauge("db_pool_size", "", registry=registry).set_function(lambda: pool.checkedin() + pool.checkedout())

    def default_registry(engine, registry):
        from prometheus_client import CollectorRegistry

        nb08.gauges_reference(engine, CollectorRegistry())   # somewhere else than the registry given

    for wrong, why in [(stale, "at scrape time"), (negative_overflow, "never below 0"),
                       (open_connections, "pool's size"), (default_registry, "registry=registry")]:
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb08_q3_rejects_ending_too_much_too_little_or_the_wrong_session(exercises):
    q3 = exercises[2]

    def everyone_else(conn, pid):   # every other session of the app
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user "
                     "AND pid NOT IN (pg_backend_pid(), %s) AND application_name = "
                     "(SELECT application_name FROM pg_stat_activity WHERE pid = %s)", [pid, pid])

    def idle_in_transaction(conn, pid):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE state = 'idle in transaction' AND usename = current_user")

    def the_waiter(conn, pid):
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])

    def cancel(conn, pid):   # cancels a running statement: the idle blocker runs none
        conn.execute("SELECT pg_cancel_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b", [pid])

    for wrong, why in [(everyone_else, "block nobody"), (idle_in_transaction, "block nobody"),
                       (the_waiter, "waiting UPDATE went through"), (cancel, "waiting UPDATE went through"),
                       (lambda conn, pid: None, "waiting UPDATE went through")]:
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and why in diff, (getattr(wrong, "__name__", wrong), diff)
