"""Exercises of notebook 01 (connection pooling): size a deployment, release early, survive a backend kill.

Each checker reads what SQLAlchemy and PostgreSQL really do with an answer, not its letter: q1 builds a
QueuePool with the learner's numbers, q2 watches the pool's events while the learner's handle() serves a burst,
q3 kills the backends under an engine made with the learner's options and checks that it still pools.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise, WrongKind

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

PROCESSES, THREADS, MAX_CONNECTIONS, SUPERUSER_RESERVED, HEADROOM = 4, 8, 100, 3, 10
SIZING = (f"Your API runs {PROCESSES} worker processes with {THREADS} threads each. Every thread serves requests "
          "all day long, one after another, each request running one query at a time (a steady load, not a "
          f"burst). The server has max_connections = {MAX_CONNECTIONS} ({SUPERUSER_RESERVED} reserved for "
          f"superusers) and you keep {HEADROOM} for migrations and admin. Choose pool_size and max_overflow per "
          "process so that no thread ever waits for a connection, no request opens a connection of its own under "
          "that steady load, and the deployment fits the server even with every pool at its limit.")


class _StandIn:
    """A DBAPI connection stand-in: enough for SQLAlchemy's QueuePool to run its real bookkeeping without a server."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def sizing_verdict(answer: dict[str, int]) -> dict[str, bool]:
    """What SQLAlchemy's own QueuePool does with these numbers, per process (no server needed).

    `pool_size=0` means "no limit" and `max_overflow=-1` "no overflow limit" to SQLAlchemy, and connections beyond
    pool_size are closed when they are returned: the checker runs the pool instead of trusting the arithmetic.
    """
    from sqlalchemy import exc
    from sqlalchemy.pool import QueuePool

    from ..pooling import connections_available

    if not isinstance(answer, dict) or set(answer) != {"pool_size", "max_overflow"}:
        keys = sorted(map(str, answer)) if isinstance(answer, dict) else type(answer).__name__
        raise WrongKind(f"answer with a dict of the keys 'pool_size' and 'max_overflow' only, not {keys}")
    size, overflow = answer["pool_size"], answer["max_overflow"]
    share = connections_available(MAX_CONNECTIONS, SUPERUSER_RESERVED, 0, HEADROOM) // PROCESSES
    whole = all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (size, overflow))
    verdict = {"pool_size and max_overflow are whole numbers, not negative": whole,
               "every thread of a process gets a connection at once": False,
               "under steady load, connections stay open between requests": False,
               "a process never opens more than its share of the server": False}
    if not whole:
        return verdict
    opened: list[int] = []
    pool = QueuePool(lambda: opened.append(1) or _StandIn(), pool_size=size, max_overflow=overflow, timeout=0.01)

    def checkout(n: int) -> list[Any]:
        held = []
        try:
            for _ in range(n):
                held.append(pool.connect())
        except exc.TimeoutError:
            pass
        return held

    held = checkout(THREADS)  # every thread at once
    verdict["every thread of a process gets a connection at once"] = len(held) == THREADS
    for conn in held:
        conn.close()
    before = len(opened)
    for _ in range(3):  # three rounds of steady load: every thread takes a connection, then gives it back
        held = checkout(THREADS)
        for conn in held:
            conn.close()
    verdict["under steady load, connections stay open between requests"] = len(opened) == before
    held = checkout(share + 1)  # the most this process's pool would ever open
    verdict["a process never opens more than its share of the server"] = len(held) <= share
    for conn in held:
        conn.close()
    pool.dispose()
    return verdict


HANDLE_STARTER = '''
def handle(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.5)   # slow work: rendering the invoice
    return name
'''
RENDER_SECONDS, HOLD_LIMIT = 0.5, 0.05  # a query holds its connection for about a millisecond: 0.05 s is 10 % of the work
NAMES_SCHEMA = "nb01"  # the checker's engine finds `users` here first: a scratch copy whose names only a query returns
BURST_EXPECTED: dict[str, Any] = {
    "requests that failed": 0,
    "the pool is the one given: 2 connections, no overflow, pool_timeout 0.3 s": True,
    "each request took one connection from the pool it was given and queried through it": True,
    "no request kept its connection during the slow work": True,
    "every request still rendered its invoice (0.5 s of slow work)": True,
}


def scratch_users(wb: Workbook) -> None:
    """A scratch `users` table in nb01 whose names differ from the real ones (reversed): a handle() that does not
    query through the engine it is given (names fetched up front, hard-coded) returns the wrong names."""
    with wb.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("SET LOCAL lock_timeout = '5s'"))  # never wait forever on an earlier answer still running
        conn.execute(text(f"DROP TABLE IF EXISTS {NAMES_SCHEMA}.users"))
        conn.execute(text(f"CREATE TABLE {NAMES_SCHEMA}.users AS "
                          "SELECT id, initcap(reverse(name)) || ' ' || id AS name FROM public.users WHERE id <= 50"))


def burst_verdict(wb: Workbook, handle: Callable[[Engine, int], Any], workers: int = 6) -> dict[str, Any]:
    """Run `handle(engine, user_id)` for `workers` users at once on a pool of 2 with pool_timeout 0.3 s.

    The pool's events say how each request used it: connections opened, checkouts, how long each connection
    stayed checked out, statements sent through it; and whether the pool it was given is still the same.
    """
    from sqlalchemy import event

    from ..pooling import watch_pool
    from ..workload import run_together

    scratch_users(wb)
    engine = wb.make_engine(pool_size=2, max_overflow=0, pool_timeout=0.3,
                            connect_args={"options": f"-c search_path={NAMES_SCHEMA},public"})
    pool, lock = engine.pool, threading.Lock()
    since: dict[int, float] = {}
    holds: list[float] = []
    statements = [0]

    def on_checkout(dbapi_conn, record, proxy) -> None:
        since[id(record)] = time.perf_counter()

    def on_checkin(dbapi_conn, record) -> None:
        with lock:
            holds.append(time.perf_counter() - since.pop(id(record), time.perf_counter()))

    def on_statement(*_args) -> None:
        with lock:
            statements[0] += 1

    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        with watch_pool(engine) as watch:
            run = run_together(lambda lane: handle(engine, lane.worker + 1), workers, timeout=30)
        same_pool = (engine.pool is pool and pool.size() == 2 and pool._max_overflow == 0 and pool.timeout() == 0.3
                     and watch.connects <= 2)
    finally:
        pool.dispose()
        engine.dispose()
    crashed = run.outcomes[~run.outcomes["outcome"].isin(["ok", "TimeoutError"])]
    if len(crashed):  # a bug in handle() itself: say what it raised rather than "requests that failed"
        raise RuntimeError(f"handle() raised {crashed['outcome'].iloc[0]}: {crashed['error'].iloc[0]}")
    ok = run.outcomes[run.outcomes["outcome"] == "ok"]
    return {"requests that failed": workers - run.count("ok"),
            "results": run.outcomes["result"].tolist(),  # the scratch names: only a real query returns them
            "the pool is the one given: 2 connections, no overflow, pool_timeout 0.3 s": same_pool,
            "each request took one connection from the pool it was given and queried through it":
                watch.checkouts == workers and statements[0] >= workers,
            "no request kept its connection during the slow work": bool(holds) and max(holds) < HOLD_LIMIT,
            "every request still rendered its invoice (0.5 s of slow work)":
                len(ok) == workers and bool((ok["seconds"] >= RENDER_SECONDS * 0.9).all())}


KILL_EXPECTED = {"the first request after the kill succeeded": True,
                 "the engine keeps a bounded QueuePool (pool_size ≥ 1, max_overflow ≥ 0)": True,
                 "a connection is reused from one request to the next": True}


def kill_verdict(wb: Workbook, engine_options: dict[str, Any]) -> dict[str, bool]:
    """An engine with these options: does the first request after its backends were killed succeed, and does it
    still pool (a bounded QueuePool, one connection reused across requests further apart than the kill took)?"""
    from sqlalchemy import text
    from sqlalchemy.pool import QueuePool

    from ..pooling import kill_then_use

    if not isinstance(engine_options, dict):
        raise WrongKind(f"answer with a dict of create_engine options, not a {type(engine_options).__name__}")
    if "pool_pre_ping" in engine_options and not isinstance(engine_options["pool_pre_ping"], bool):
        raise WrongKind(f"pool_pre_ping takes True or False, not {engine_options['pool_pre_ping']!r}")
    engine = wb.make_engine(**engine_options)
    if type(engine.pool) is not QueuePool:  # before anything calls QueuePool's methods on another pool class
        engine.dispose()
        raise WrongKind(f"the engine must keep the default QueuePool; these options give it a "
                        f"{type(engine.pool).__name__}")
    bounded = engine.pool.size() >= 1 and engine.pool._max_overflow >= 0  # 0 and -1 mean "no limit" to SQLAlchemy
    start = time.perf_counter()
    try:
        served = kill_then_use(engine, wb.url)["failed"] == 0
        span = time.perf_counter() - start  # the oldest a connection could be at the first request after the kill
    finally:
        engine.dispose()
    fresh = wb.make_engine(**engine_options)
    try:
        pids = []
        for _ in range(2):
            with fresh.connect() as conn:
                pids.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
            time.sleep(span + 0.1)  # a connection renewed by age at the kill is renewed here too
    finally:
        fresh.dispose()
    return {"the first request after the kill succeeded": served,
            "the engine keeps a bounded QueuePool (pool_size ≥ 1, max_overflow ≥ 0)": bounded,
            "a connection is reused from one request to the next": pids[0] == pids[1]}


def handle_fixed(engine: Engine, user_id: int) -> str:
    """Reference for q2: the connection goes back to the pool before the slow work."""
    from sqlalchemy import text

    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(RENDER_SECONDS)  # slow work: rendering the invoice
    return name


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 01, bound to this notebook's database."""
    q1 = Exercise(
        name="q1",
        question=SIZING + " Answer with a dict {'pool_size': …, 'max_overflow': …}; the checker runs SQLAlchemy's "
                          "QueuePool with your numbers.",
        reference=lambda: sizing_verdict({"pool_size": THREADS, "max_overflow": 0}),
        hint_text="Two facts: a connection that comes back to the pool is closed when pool_size connections are "
                  "already idle there, so under steady load only pool_size connections stay open (§8); and every "
                  "process may open pool_size + max_overflow connections (§4).",
        solution_code=f"q1.check({{'pool_size': {THREADS}, 'max_overflow': 0}})  "
                      f"# {THREADS} threads stay on {THREADS} pooled connections; "
                      f"{PROCESSES} × {THREADS} = {PROCESSES * THREADS} ≤ "
                      f"{MAX_CONNECTIONS - SUPERUSER_RESERVED - HEADROOM}",
        evaluate=sizing_verdict,
    )
    q2 = Exercise(
        name="q2",
        question="handle() holds its connection while it renders an invoice (0.5 s). Six requests arrive at once "
                 "at a pool of 2 with pool_timeout=0.3 s, and four of them fail. Change handle() so that all six "
                 "succeed with the same results: each request still renders its invoice, queries through the "
                 "engine it is given, and takes one connection from that pool, which stays as it is.",
        # the verdicts are fixed; the reference runs only for the names its queries return
        reference=lambda: {**BURST_EXPECTED, "results": burst_verdict(wb, handle_fixed)["results"]},
        hint_text="Which lines of handle() need the connection, and which only need the name?",
        solution_code="def handle(engine, user_id):\n"
                      "    with engine.connect() as conn:\n"
                      "        name = conn.execute(text(\"SELECT name FROM users WHERE id = :id\"),\n"
                      "                            {\"id\": user_id}).scalar()\n"
                      "    time.sleep(0.5)   # slow work, after the connection went back to the pool\n"
                      "    return name\n\nq2.check(handle)",
        evaluate=lambda handle: burst_verdict(wb, handle),
        starter=HANDLE_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="The server restarted: every backend behind your engine's pool is gone. Which create_engine "
                 "option makes the first request after that succeed, while the engine keeps pooling (the default "
                 "QueuePool, bounded, each connection reused from request to request)? Answer with a dict of options, "
                 "e.g. {'option_name': value}.",
        reference=lambda: dict(KILL_EXPECTED),
        hint_text="§6: when could the pool find out that a connection died, without giving up on reuse?",
        solution_code="q3.check({'pool_pre_ping': True})",
        evaluate=lambda options: kill_verdict(wb, options),
    )
    return q1, q2, q3
