"""Exercises of notebook 08 (monitoring): find the N+1 endpoint, export pool gauges, end the blocking session.

Each checker runs the learner's code against something real: requests to `monitoring.feed_app`, an engine's
pool, sessions staged on the server. Endpoint names and the mix of requests are drawn at random.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise, WrongKind

if TYPE_CHECKING:
    import pandas as pd

    from ..workbook import Workbook

WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "grove", "heron", "iris", "juniper", "kite", "lotus"]
GAUGES = ("db_pool_checked_out", "db_pool_overflow", "db_pool_size")


def request_log(wb: Workbook) -> tuple[pd.DataFrame, str]:
    """Requests to feed_app under random paths (the N+1 endpoint is not the busiest, nor the one with most queries
    per request, nor the single worst request); one row per request: path, items, queries, ms. And the N+1's path."""
    import time
    import warnings

    import pandas as pd

    from .. import monitoring

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx (errata: TestClient)
        from fastapi.testclient import TestClient

    names = random.sample(WORDS, 4)
    paths = {kind: f"/api/{name}" for kind, name in zip(("user", "feed", "feed_eager", "stats"), names, strict=True)}
    calls = ([f"{paths['stats']}"] * 12 + [f"{paths['user']}?id={random.randint(1, 50)}" for _ in range(8)]
             + [f"{paths['feed']}?limit={k}" for k in random.sample(range(1, 7), 6)]
             + [f"{paths['feed_eager']}?limit={k}" for k in random.sample(range(1, 7), 6)])
    random.shuffle(calls)
    rows = []
    with TestClient(monitoring.feed_app(_engine(wb), paths)) as client:
        for call in calls:
            started = time.perf_counter()
            response = client.get(call)
            rows.append({"path": call.split("?")[0], "items": response.json()["items"],
                         "queries": int(response.headers["X-DB-Query-Count"]),
                         "ms": (time.perf_counter() - started) * 1000})
    return pd.DataFrame(rows), paths["feed"]


_engines: dict[str, Any] = {}


def _engine(wb: Workbook) -> Any:
    if wb.url not in _engines:
        _engines[wb.url] = wb.make_engine(connect_args={"application_name": f"{wb.app_name} exercises"})
    return _engines[wb.url]


def n_plus_one_verdict(wb: Workbook, find: Callable[[pd.DataFrame], str]) -> dict[str, bool]:
    """The learner's finder on two request logs of their own (new random names each time)."""
    found = []
    for _ in range(2):
        log, n_plus_one = request_log(wb)
        answer = find(log.copy())
        if not isinstance(answer, str):
            raise WrongKind(f"return the endpoint's path as a string (e.g. '/api/…'), not a {type(answer).__name__}")
        found.append(answer == n_plus_one)
    return {"found the N+1 endpoint in the first log": found[0], "found the N+1 endpoint in the second log": found[1]}


def n_plus_one_reference(requests: pd.DataFrame) -> str:
    """The endpoint whose query count grows with the items it returns."""
    per_item = requests.groupby("path")[["items", "queries"]].apply(lambda g: g["queries"].corr(g["items"]))
    return per_item.fillna(0).idxmax()


def gauges_verdict(wb: Workbook, register: Callable[[Any, Any], Any]) -> dict[str, bool]:
    """Register the learner's gauges for a pool of 3 (+3 overflow), then scrape with 0, 2 and 5 connections out."""
    from contextlib import ExitStack

    from prometheus_client import CollectorRegistry

    engine = wb.make_engine(pool_size=3, max_overflow=3, pool_timeout=2,
                            connect_args={"application_name": f"{wb.app_name} exercises"})
    registry = CollectorRegistry()
    register(engine, registry)
    scraped = []
    try:
        for out in (0, 2, 5):
            with ExitStack() as stack:
                for _ in range(out):
                    stack.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
                scraped.append({name: registry.get_sample_value(name) for name in GAUGES})
    finally:
        engine.dispose()
    if any(value is None for scrape in scraped for value in scrape.values()):
        missing = sorted({n for scrape in scraped for n, v in scrape.items() if v is None})
        raise WrongKind(f"the registry you were given has no gauge named {', '.join(missing)}: "
                        "create each Gauge with registry=registry")
    return {"db_pool_checked_out follows the pool at scrape time": [s[GAUGES[0]] for s in scraped] == [0, 2, 5],
            "db_pool_overflow counts connections beyond pool_size, never below 0":
                [s[GAUGES[1]] for s in scraped] == [0, 0, 2],
            "db_pool_size is the pool's size": all(s[GAUGES[2]] == 3 for s in scraped)}


def gauges_reference(engine: Any, registry: Any) -> None:
    from prometheus_client import Gauge

    pool = engine.pool
    Gauge("db_pool_checked_out", "connections in use", registry=registry).set_function(pool.checkedout)
    Gauge("db_pool_overflow", "connections beyond pool_size", registry=registry).set_function(
        lambda: max(pool.overflow(), 0))
    Gauge("db_pool_size", "pool_size", registry=registry).set_function(pool.size)


def blocker_verdict(wb: Workbook, end_blocker: Callable[[Any, int], Any]) -> dict[str, bool]:
    """Stage a blocked UPDATE, a session idle in transaction that blocks it, an innocent idle-in-transaction session
    and an idle one (all the same role and application); call end_blocker(conn, waiter_pid); judge who survived."""
    from .. import db
    from ..locks import wait_until_blocked

    libpq, app = wb.url.replace("+psycopg", ""), f"{wb.app_name} q3"
    with db.connect(libpq, application_name=app) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS nb08.q3_accounts (id int PRIMARY KEY, balance int NOT NULL); "
                      "TRUNCATE nb08.q3_accounts; INSERT INTO nb08.q3_accounts VALUES (1, 100), (2, 100)")
    sessions = {name: db.connect(libpq, autocommit=False, application_name=app)
                for name in ("blocker", "innocent", "idle", "waiter")}
    pids = {name: conn.info.backend_pid for name, conn in sessions.items()}
    sessions["blocker"].execute("UPDATE nb08.q3_accounts SET balance = balance - 1 WHERE id = 1")   # then idle
    sessions["innocent"].execute("UPDATE nb08.q3_accounts SET balance = balance + 1 WHERE id = 2")  # idle too
    sessions["idle"].commit()
    sessions["waiter"].execute("SET lock_timeout = '5s'")
    done, failed = threading.Event(), []

    def wait() -> None:
        try:
            sessions["waiter"].execute("UPDATE nb08.q3_accounts SET balance = balance + 1 WHERE id = 1")
            done.set()
        except Exception as error:
            failed.append(getattr(error, "sqlstate", None))

    def lives(conn: Any) -> bool:  # a terminated session fails its next statement (the signal came first)
        try:
            conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    thread = threading.Thread(target=wait, daemon=True)
    try:
        with db.connect(libpq, application_name=f"{app} (you)") as yours:
            thread.start()
            wait_until_blocked(yours, pids["waiter"])
            end_blocker(yours, pids["waiter"])
            done.wait(3)
            alive = {name for name in ("blocker", "innocent", "idle") if lives(sessions[name])}
    finally:
        for conn in sessions.values():
            conn.close()  # the blocker's rollback (if it still lives) lets a still waiting UPDATE finish
        thread.join(6)
    return {"the waiting UPDATE went through": done.is_set(),
            "the blocking session was ended": "blocker" not in alive,
            "the waiting session was left alone": "57P01" not in failed,   # admin_shutdown: it was terminated
            "sessions that block nobody were left alone": {"innocent", "idle"} <= alive}


def end_blocker_reference(conn: Any, pid: int) -> None:
    conn.execute("SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b", [pid])


N_PLUS_ONE_STARTER = '''
def n_plus_one_endpoint(requests):
    return requests.groupby("path")["queries"].sum().idxmax()
'''
GAUGES_STARTER = '''
def pool_gauges(engine, registry):
    pool = engine.pool
    Gauge("db_pool_checked_out", "connections in use", registry=registry).set(pool.checkedout())
    Gauge("db_pool_overflow", "connections beyond pool_size", registry=registry).set(pool.overflow())
    Gauge("db_pool_size", "pool_size", registry=registry).set(pool.size())
'''
BLOCKER_STARTER = '''
def end_blocker(conn, pid):
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE state = 'idle in transaction' AND usename = current_user")
'''


def _callable(answer: Any, name: str) -> Any:
    if not callable(answer):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 08, bound to this notebook's database."""
    q1 = Exercise(
        name="q1",
        question="n_plus_one_endpoint(requests) gets one row per request of an app (path, items returned, queries "
                 "sent, ms). Return the path of the endpoint with an N+1: the one whose number of queries grows "
                 "with the number of items it returns. (The check calls it on two fresh logs of its own, with "
                 "other endpoint names; the busiest endpoint is not always the culprit.)",
        reference=lambda: n_plus_one_verdict(wb, n_plus_one_reference),
        hint_text="§1 and §5: an N+1 sends 1 + N queries for N items. Compare queries with items, per path: "
                  "a constant number of queries, however large, is not an N+1.",
        solution_code="def n_plus_one_endpoint(requests):\n"
                      "    growth = requests.groupby(\"path\")[[\"items\", \"queries\"]].apply(\n"
                      "        lambda g: g[\"queries\"].corr(g[\"items\"]))\n"
                      "    return growth.fillna(0).idxmax()\n\nq1.check(n_plus_one_endpoint)",
        evaluate=lambda find: n_plus_one_verdict(wb, _callable(find, "n_plus_one_endpoint")),
        starter=N_PLUS_ONE_STARTER,
    )
    q2 = Exercise(
        name="q2",
        question="pool_gauges(engine, registry) should register three gauges in `registry`: db_pool_checked_out, "
                 "db_pool_overflow (connections open beyond pool_size; never negative) and db_pool_size, each "
                 "showing the pool as it is when Prometheus scrapes, not as it was when the gauge was made. "
                 "(The check scrapes with 0, 2 and 5 connections checked out of a pool of 3 + 3 overflow.)",
        reference=lambda: gauges_verdict(wb, gauges_reference),
        hint_text="§3: a Gauge can compute its value when it is read. And what does pool.overflow() return "
                  "below pool_size?",
        solution_code="def pool_gauges(engine, registry):\n"
                      "    pool = engine.pool\n"
                      "    Gauge(\"db_pool_checked_out\", \"connections in use\", registry=registry).set_function(\n"
                      "        pool.checkedout)\n"
                      "    Gauge(\"db_pool_overflow\", \"connections beyond pool_size\", registry=registry).set_function(\n"
                      "        lambda: max(pool.overflow(), 0))\n"
                      "    Gauge(\"db_pool_size\", \"pool_size\", registry=registry).set_function(pool.size)\n\n"
                      "q2.check(pool_gauges)",
        evaluate=lambda register: gauges_verdict(wb, _callable(register, "pool_gauges")),
        starter=GAUGES_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="A statement has been waiting for a lock. end_blocker(conn, pid) gets a connection and the pid of "
                 "the waiting session: end the session(s) it waits for, and nothing else. (The check stages the "
                 "wait among other sessions of the same role: one idle, one idle in transaction that blocks "
                 "nobody.)",
        reference=lambda: blocker_verdict(wb, end_blocker_reference),
        hint_text="§4: which function names the sessions a pid waits for? pg_terminate_backend ends one session; "
                  "pg_cancel_backend only cancels a running statement, and an idle session runs none.",
        solution_code="def end_blocker(conn, pid):\n"
                      "    conn.execute(\"SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b\", "
                      "[pid])\n\nq3.check(end_blocker)",
        evaluate=lambda end: blocker_verdict(wb, _callable(end, "end_blocker")),
        starter=BLOCKER_STARTER,
    )
    return q1, q2, q3
