"""Exercises of notebook 01 (connection pooling): size a deployment, release early, survive a backend kill."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

PROCESSES, THREADS, MAX_CONNECTIONS, SUPERUSER_RESERVED, HEADROOM = 4, 8, 100, 3, 10
SIZING = (f"Your API runs {PROCESSES} worker processes with {THREADS} threads each; a thread runs at most one query "
          f"at a time. The server has max_connections = {MAX_CONNECTIONS} ({SUPERUSER_RESERVED} reserved for "
          f"superusers) and you keep {HEADROOM} for migrations and admin. Choose pool_size and max_overflow per "
          "process so that no thread ever waits for a connection and the deployment fits the server.")


def sizing_verdict(answer: dict[str, int]) -> dict[str, bool]:
    """Whether a {pool_size, max_overflow} choice serves every thread and fits the server (the arithmetic of §3)."""
    from ..pooling import connections_available, connections_needed

    size, overflow = int(answer["pool_size"]), int(answer["max_overflow"])
    available = connections_available(MAX_CONNECTIONS, SUPERUSER_RESERVED, 0, HEADROOM)
    return {"pool_size and max_overflow are not negative": size >= 0 and overflow >= 0,
            "every thread of a process can hold a connection at once": size + overflow >= THREADS,
            "all processes together fit the server": connections_needed(PROCESSES, size, overflow) <= available}


def burst_verdict(wb: Workbook, handle: Callable[[Engine, int], Any], workers: int = 6) -> dict[str, Any]:
    """Run `handle(engine, user_id)` for `workers` users at once on a pool of 2 with pool_timeout 0.3 s."""
    from ..workload import run_together

    engine = wb.make_engine(pool_size=2, max_overflow=0, pool_timeout=0.3)
    try:
        run = run_together(lambda lane: handle(engine, lane.worker + 1), workers, timeout=30)
    finally:
        engine.dispose()
    return {"requests that failed": workers - run.count("ok"), "results": run.outcomes["result"].tolist()}


def kill_verdict(wb: Workbook, engine_options: dict[str, Any]) -> dict[str, bool]:
    """Make an engine with these options, pool one connection, terminate its backend: does the next request work?"""
    from ..pooling import kill_then_use

    engine = wb.make_engine(pool_size=1, **engine_options)
    try:
        return {"the first request after the kill succeeded": kill_then_use(engine, wb.url)["next use"] == "ok"}
    finally:
        engine.dispose()


def handle_fixed(engine: Engine, user_id: int) -> str:
    """Reference for q2: the connection goes back to the pool before the slow work."""
    from sqlalchemy import text

    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(0.5)  # slow work: rendering the invoice
    return name


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 01, bound to this notebook's database."""
    q1 = Exercise(
        name="q1",
        question=SIZING + " Answer with a dict {'pool_size': …, 'max_overflow': …}.",
        reference=lambda: sizing_verdict({"pool_size": THREADS, "max_overflow": 0}),
        hint_text=f"Each process needs pool_size + max_overflow ≥ {THREADS}; all of them together need "
                  f"{PROCESSES} × (pool_size + max_overflow) ≤ {MAX_CONNECTIONS} − {SUPERUSER_RESERVED} − {HEADROOM}.",
        solution_code=f"q1.check({{'pool_size': {THREADS}, 'max_overflow': 0}})  "
                      f"# {PROCESSES} × {THREADS} = {PROCESSES * THREADS} ≤ "
                      f"{MAX_CONNECTIONS - SUPERUSER_RESERVED - HEADROOM}; a thread never waits",
        evaluate=sizing_verdict,
    )
    q2 = Exercise(
        name="q2",
        question="handle() holds its connection while it renders an invoice (0.5 s). Six requests arrive at once "
                 "at a pool of 2 with pool_timeout=0.3 s, and four of them fail. Fix handle() so that all six "
                 "succeed with the same results, without changing the pool.",
        reference=lambda: burst_verdict(wb, handle_fixed),
        hint_text="Only the query needs the connection: end the `with engine.connect()` block before time.sleep().",
        solution_code="def handle(engine, user_id):\n"
                      "    with engine.connect() as conn:\n"
                      "        name = conn.execute(text(\"SELECT name FROM users WHERE id = :id\"),\n"
                      "                            {\"id\": user_id}).scalar()\n"
                      "    time.sleep(0.5)   # slow work, after the connection went back to the pool\n"
                      "    return name\n\nq2.check(handle)",
        evaluate=lambda handle: burst_verdict(wb, handle),
    )
    q3 = Exercise(
        name="q3",
        question="Which create_engine option makes the first request after a backend was killed succeed? "
                 "Answer with a dict of options, e.g. {'option_name': value}.",
        reference=lambda: kill_verdict(wb, {"pool_pre_ping": True}),
        hint_text="Section 4: the pool can test a connection each time it is checked out.",
        solution_code="q3.check({'pool_pre_ping': True})",
        evaluate=lambda options: kill_verdict(wb, options),
    )
    return q1, q2, q3
