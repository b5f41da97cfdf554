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
GAUGES = ("db_pool_open", "db_pool_idle", "db_pool_overflow")


def request_log(wb: Workbook) -> tuple[pd.DataFrame, str]:
    """Requests to feed_app, plus a `report` endpoint, under random paths; one row per request: path, items,
    queries, ms. And the N+1's path. Only the N+1's queries grow with its items: `report` sends a varying number
    of queries (more, and more varied, than the N+1) for one item, and is the slowest, so spread, maximum, ratio
    or latency do not find it;
    the N+1 is neither the busiest nor the least requested endpoint."""
    import time
    import warnings

    import pandas as pd
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from .. import monitoring

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx (errata: TestClient)
        from fastapi.testclient import TestClient

    names = random.sample(WORDS, 5)
    paths = {kind: f"/api/{name}"
             for kind, name in zip(("user", "feed", "feed_eager", "stats", "report"), names, strict=True)}
    engine = _engine(wb)
    app = monitoring.feed_app(engine, paths)

    @app.get(paths["report"])
    def report(pages: int = 1) -> dict[str, Any]:  # one item built from `pages` queries, the slowest endpoint
        with Session(engine) as session:
            for page in range(pages):
                session.execute(text("SELECT count(*) FROM posts, pg_sleep(:s) WHERE id % 16 = :p"),
                                {"p": page, "s": 0.04 if page == 0 else 0})
            return {"items": 1}

    calls = ([paths["stats"]] * 12 + [f"{paths['user']}?id={random.randint(1, 50)}" for _ in range(10)]
             + [f"{paths['report']}?pages={k}" for k in random.sample(range(2, 16), 8)]
             + [f"{paths['feed']}?limit={k}" for k in random.sample(range(1, 8), 7)]
             + [f"{paths['feed_eager']}?limit={k}" for k in random.sample(range(1, 8), 6)])
    random.shuffle(calls)
    rows = []
    with TestClient(app) as client:
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
    """Register the learner's gauges for a pool of n (+ n overflow; n drawn at random), then scrape, each a random
    number of times: a fresh pool, 2 checked out, n + 2 out, 2 of those returned, all returned."""
    from contextlib import ExitStack

    from prometheus_client import CollectorRegistry

    n = random.choice([3, 4, 5])
    engine = wb.make_engine(pool_size=n, max_overflow=n, pool_timeout=2,
                            connect_args={"application_name": f"{wb.app_name} exercises"})
    registry = CollectorRegistry()
    register(engine, registry)
    scraped: list[list[tuple[Any, ...]]] = []  # per state of the pool, every scrape of (open, idle, overflow)

    def scrape() -> None:
        scraped.append([tuple(registry.get_sample_value(g) for g in GAUGES) for _ in range(random.randint(1, 3))])

    try:
        with ExitStack() as first, ExitStack() as second:
            scrape()
            for _ in range(2):
                first.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
            scrape()
            for _ in range(n):
                second.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
            scrape()
            first.close()
            scrape()  # 2 overflow connections still open, though fewer than n are in use
        scrape()  # the overflow connections were closed as they came back
    finally:
        engine.dispose()
    missing = sorted({g for state in scraped for values in state for g, v in zip(GAUGES, values, strict=True)
                      if v is None})
    if missing:
        raise WrongKind(f"the registry you were given has no gauge named {', '.join(missing)}: "
                        "create each Gauge with registry=registry")
    expected = [(0, 0, 0), (2, 0, 0), (n + 2, 0, 2), (n + 2, 2, 2), (n, n, 0)]

    def follows(i: int) -> bool:
        return all(values[i] == want[i] for state, want in zip(scraped, expected, strict=True) for values in state)

    return {"db_pool_open shows the connections open (idle or in use) when scraped": follows(0),
            "db_pool_idle shows the open connections waiting in the pool": follows(1),
            "db_pool_overflow shows the connections open beyond pool_size, never below 0": follows(2)}


def gauges_reference(engine: Any, registry: Any) -> None:
    from prometheus_client import Gauge

    pool = engine.pool
    Gauge("db_pool_open", "connections open", registry=registry).set_function(
        lambda: pool.checkedin() + pool.checkedout())
    Gauge("db_pool_idle", "connections idle in the pool", registry=registry).set_function(pool.checkedin)
    Gauge("db_pool_overflow", "connections open beyond pool_size", registry=registry).set_function(
        lambda: max(pool.overflow(), 0))


def blocker_verdict(wb: Workbook, end_blocker: Callable[[Any, int], Any]) -> dict[str, bool]:
    """Stage two lock waits among sessions of one role and application: an idle-in-transaction session that blocks
    nobody (opened first, so the oldest), the blocker, another blocker and the session it blocks, an idle one, and
    the waiter (rows drawn at random); call end_blocker(conn, waiter_pid) on a bounded connection; judge who lived."""
    from .. import db
    from ..locks import wait_until_blocked

    libpq, app = wb.url.replace("+psycopg", ""), f"{wb.app_name} q3"
    with db.connect(libpq, application_name=app) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS nb08.q3_accounts (id int PRIMARY KEY, balance int NOT NULL); "
                      "TRUNCATE nb08.q3_accounts; INSERT INTO nb08.q3_accounts VALUES (1, 100), (2, 100), (3, 100)")
    names = ("bystander", "blocker", "other blocker", "other waiter", "idle", "waiter")
    sessions = {name: db.connect(libpq, autocommit=False, application_name=app) for name in names}
    pids = {name: conn.info.backend_pid for name, conn in sessions.items()}
    row = dict(zip(("bystander", "blocker", "other blocker"), random.sample([1, 2, 3], 3), strict=True))
    update = "UPDATE nb08.q3_accounts SET balance = balance + 1 WHERE id = %s"
    for name in ("bystander", "blocker", "other blocker"):  # then idle in transaction, holding a row lock each
        sessions[name].execute(update, [row[name]])
    sessions["idle"].commit()
    failed: dict[str, list[str | None]] = {"waiter": [], "other waiter": []}
    done = {name: threading.Event() for name in failed}

    def wait(name: str, target: int) -> None:
        try:
            sessions[name].execute("SET lock_timeout = '5s'")
            sessions[name].execute(update, [target])
            done[name].set()
        except Exception as error:
            failed[name].append(getattr(error, "sqlstate", None))

    def lives(conn: Any) -> bool:  # a terminated session fails its next statement (the signal came first)
        try:
            conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    threads = [threading.Thread(target=wait, args=("other waiter", row["other blocker"]), daemon=True),
               threading.Thread(target=wait, args=("waiter", row["blocker"]), daemon=True)]
    try:
        bounded = "-c statement_timeout=3s -c lock_timeout=1s"   # an answer that waits gives up, never hangs
        with db.connect(libpq, application_name=f"{app} (you)", options=bounded) as yours:
            for thread, name in zip(threads, ("other waiter", "waiter"), strict=True):
                thread.start()
                wait_until_blocked(yours, pids[name])
            end_blocker(yours, pids["waiter"])
            alive = {name for name in ("bystander", "blocker", "other blocker", "idle") if lives(sessions[name])}
            if "blocker" not in alive and not failed["waiter"]:
                done["waiter"].wait(5)  # its lock is free: the UPDATE goes through at once (no wait otherwise)
            waiter_lives = not done["waiter"].is_set() or lives(sessions["waiter"])
    finally:
        for conn in sessions.values():
            conn.close()  # the blockers' rollback (if they still live) lets a still waiting UPDATE finish
        for thread in threads:
            thread.join(6)
    return {"the waiting UPDATE went through": done["waiter"].is_set(),
            "the blocking session was ended": "blocker" not in alive,
            "the waiting session was left alone": waiter_lives and "57P01" not in failed["waiter"],  # admin_shutdown
            "sessions that do not block it were left alone":
                {"bystander", "other blocker", "idle"} <= alive and "57P01" not in failed["other waiter"]}


def end_blocker_reference(conn: Any, pid: int) -> None:
    conn.execute("SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b", [pid])


N_PLUS_ONE_STARTER = '''
def n_plus_one_endpoint(requests):
    return requests.groupby("path")["queries"].sum().idxmax()
'''
GAUGES_STARTER = '''
def pool_gauges(engine, registry):
    pool = engine.pool
    Gauge("db_pool_open", "connections open", registry=registry).set(pool.size())
    Gauge("db_pool_idle", "connections idle in the pool", registry=registry).set(pool.size() - pool.checkedout())
    Gauge("db_pool_overflow", "connections open beyond pool_size", registry=registry).set(pool.overflow())
'''
BLOCKER_STARTER = '''
def end_blocker(conn, pid):
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                 "AND datname = current_database() AND usename = current_user")
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
                 "other endpoint names and one more endpoint; the busiest or slowest endpoint, or the one whose "
                 "query count varies most, is not always the culprit.)",
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
        question="pool_gauges(engine, registry) should register three gauges in `registry`, each showing the pool "
                 "as it is when Prometheus scrapes: db_pool_open (connections open, idle or in use), db_pool_idle "
                 "(open connections waiting in the pool) and db_pool_overflow (connections open beyond pool_size; "
                 "never negative). The starter reads capacity where it should count connections, and reads once. "
                 "(The check scrapes a pool of n + n overflow while connections are checked out and returned.)",
        reference=lambda: gauges_verdict(wb, gauges_reference),
        hint_text="§3: a Gauge can compute its value when it is read (set_function). print(engine.pool.status()) "
                  "names what a QueuePool counts; pool.checkedin() is the idle connections. What does "
                  "pool.overflow() return before pool_size connections are open, and does an overflow connection "
                  "stay open once returned while the pool holds fewer than pool_size?",
        solution_code="def pool_gauges(engine, registry):\n"
                      "    pool = engine.pool\n"
                      "    Gauge(\"db_pool_open\", \"connections open\", registry=registry).set_function(\n"
                      "        lambda: pool.checkedin() + pool.checkedout())\n"
                      "    Gauge(\"db_pool_idle\", \"connections idle in the pool\", registry=registry).set_function(\n"
                      "        pool.checkedin)\n"
                      "    Gauge(\"db_pool_overflow\", \"connections open beyond pool_size\", registry=registry)"
                      ".set_function(\n"
                      "        lambda: max(pool.overflow(), 0))\n\n"
                      "q2.check(pool_gauges)",
        evaluate=lambda register: gauges_verdict(wb, _callable(register, "pool_gauges")),
        starter=GAUGES_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="A statement has been waiting for a lock. end_blocker(conn, pid) gets a connection and the pid of "
                 "the waiting session: end the session(s) it waits for, and nothing else. (The check stages the "
                 "wait among other sessions of the same role and application: one idle, one idle in transaction "
                 "that blocks nobody, and another blocker with a waiter of its own.)",
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
