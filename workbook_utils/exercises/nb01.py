"""Exercises of notebook 01 (connection pooling): size a deployment, release early, survive a backend kill.

Each checker reads what SQLAlchemy and PostgreSQL really do with an answer, under conditions drawn afresh for every
check. q1 runs SQLAlchemy's QueuePool with the numbers the learner's rule gives for §4's deployment and a dozen
drawn at random (one of them with no room to spare). q2 serves a burst of drawn size on a pool of drawn size and
watches each time.sleep and each checkout: the slow work must not happen while the request holds a connection (the
sleep is observed, not waited in full; slow work of another kind shows as a long checkout). q3 kills the backends of
a pool filled to a drawn level, serves a drawn number of requests, and checks that the engine still pools.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import Question, Unmet, WrongKind
from .draws import Draw
from .faults import observed_sleep

if TYPE_CHECKING:
    import random

    from sqlalchemy.engine import Engine

    from ..workbook import Workbook


@dataclass(frozen=True)
class Deployment:
    """An API's processes and threads, and the server's connection slots (kept_free: not the API's to use)."""

    processes: int
    threads: int
    max_connections: int
    kept_free: int

    def __str__(self) -> str:
        return (f"{self.processes} processes × {self.threads} threads, max_connections = {self.max_connections} "
                f"({self.kept_free} kept free)")

    @property
    def share(self) -> int:
        """The most connections one process may open."""
        return (self.max_connections - self.kept_free) // self.processes


CLASSIC = Deployment(4, 8, 100, 13)  # §4's deployment (3 superuser slots, 10 kept for admin): checked before the drawn
DEPLOYMENTS = 12  # drawn per check of q1


def draw_deployments(rng: random.Random) -> list[Deployment]:
    """Deployments over a wide range that fit the server; the first fits exactly (no room for any overflow)."""
    drawn = []
    for i in range(DEPLOYMENTS):
        processes, threads, kept_free = rng.randint(1, 16), rng.randint(1, 32), rng.randint(3, 20)
        slack = 0 if i == 0 else rng.randint(0, 60)
        drawn.append(Deployment(processes, threads, processes * threads + kept_free + slack, kept_free))
    return drawn


POOL_SETTINGS_STARTER = '''
def pool_settings(processes, threads, max_connections, kept_free):
    return {"pool_size": ____, "max_overflow": ____}
'''


def pool_settings_reference(processes: int, threads: int, max_connections: int, kept_free: int) -> dict[str, int]:
    """Reference for q1: a pooled connection per thread, no overflow."""
    return {"pool_size": threads, "max_overflow": 0}


Q1 = Question(
    name="q1",
    text="Write pool_settings(processes, threads, max_connections, kept_free) for an API of `processes` worker "
         "processes with `threads` threads each. Every thread serves requests all day, one after another (a steady "
         "load, not a burst). The server allows max_connections, and kept_free of them are not yours (superuser "
         "slots, your headroom for migrations and admin).\n\nReturn each process's pool_size and max_overflow. No thread "
         "may ever wait for a connection, and under that load no connection may be closed and reopened between "
         "requests. The deployment must fit the server even with every pool at its limit. The checker runs "
         "SQLAlchemy's QueuePool with your numbers for deployments drawn at random.",
    shape="```python\ndef pool_settings(processes, threads, max_connections, kept_free):\n"
          "    return {\"pool_size\": …, \"max_overflow\": …}   # whole numbers\n```\nthen `q1.check(pool_settings)`.",
    hint_text="Two facts: a connection that comes back while pool_size connections already sit idle in the pool is "
              "closed, so under steady load only pool_size connections stay open between requests (§1); and every "
              "process may open pool_size + max_overflow connections (§4).",
    solution_code="def pool_settings(processes, threads, max_connections, kept_free):\n"
                  "    return {'pool_size': threads, 'max_overflow': 0}   # one pooled connection per thread\n\n"
                  "q1.check(pool_settings)",
    discussion="Why it works: under a steady load every thread holds a connection at once. QueuePool keeps at most "
               "pool_size of them idle when they come back and closes any that returns to a full pool, so "
               "pool_size = threads keeps them all open. max_overflow may take what is left of the process's share, "
               "and 0 is always safe.\n"
               "When is it a bad design? When all the processes' threads together are far more than the server can "
               "run at once (§5: all pools together near cores × 2 + spindles). Then run fewer threads, or give each "
               "process a smaller pool and let requests wait for a connection (a pool_timeout of a few seconds).\n"
               "Common wrong answers:\n"
               "- a small pool_size with overflow making up the threads: past pool_size, every request opens and "
               "closes a connection of its own;\n"
               "- pool_size=0 or max_overflow=-1, which SQLAlchemy reads as no limit at all;\n"
               "- sizing one pool for the whole server instead of dividing the server by the processes.")


class _StandIn:
    """A DBAPI connection stand-in: enough for SQLAlchemy's QueuePool to run its real bookkeeping without a server."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def sizing_verdict(answer: dict[str, int], deployment: Deployment = CLASSIC) -> dict[str, bool]:
    """What SQLAlchemy's own QueuePool does with these numbers, per process of `deployment` (no server needed).

    `pool_size=0` means "no limit" and `max_overflow=-1` "no overflow limit" to SQLAlchemy, and connections beyond
    pool_size are closed when they are returned: the checker runs the pool instead of trusting the arithmetic.
    """
    from sqlalchemy import exc
    from sqlalchemy.pool import QueuePool

    if not isinstance(answer, dict) or set(answer) != {"pool_size", "max_overflow"}:
        keys = sorted(map(str, answer)) if isinstance(answer, dict) else type(answer).__name__
        raise WrongKind(f"answer with a dict of the keys 'pool_size' and 'max_overflow' only, not {keys}")
    size, overflow = answer["pool_size"], answer["max_overflow"]
    whole = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in (size, overflow))
    verdict = {"pool_size and max_overflow are whole numbers, not negative": whole,
               "every thread of a process gets a connection at once": False,
               "under steady load, connections stay open between requests": False,
               "a process never opens more than its share of the server": False}
    if not whole:
        return verdict
    opened: list[int] = []
    pool = QueuePool(lambda: opened.append(1) or _StandIn(), pool_size=int(size), max_overflow=int(overflow), timeout=0.01)

    def checkout(n: int) -> list[Any]:
        held = []
        try:
            for _ in range(n):
                held.append(pool.connect())
        except exc.TimeoutError:
            pass
        return held

    threads = deployment.threads
    held = checkout(threads)  # every thread at once
    verdict["every thread of a process gets a connection at once"] = len(held) == threads
    for conn in held:
        conn.close()
    before = len(opened)
    for _ in range(3):  # three rounds of steady load: every thread takes a connection, then gives it back
        held = checkout(threads)
        for conn in held:
            conn.close()
    verdict["under steady load, connections stay open between requests"] = len(opened) == before
    held = checkout(deployment.share + 1)  # the most this process's pool would ever open
    verdict["a process never opens more than its share of the server"] = len(held) <= deployment.share
    for conn in held:
        conn.close()
    pool.dispose()
    return verdict


def sizing(answer: Any, draw: Draw) -> dict[str, bool]:
    """The rule's numbers run through QueuePool for §4's deployment and the drawn ones; the first deployment where a
    claim fails is named. Numbers alone (a dict) are refused: they could be right for one deployment by chance."""
    if not callable(answer) or isinstance(answer, type):
        raise WrongKind(f"pass your function pool_settings itself (without calling it), not a {type(answer).__name__}: "
                        f"the checker calls it for deployments it draws")
    drawn = draw.pick("deployments", draw_deployments, show=lambda ds: f"{len(ds)} drawn")
    for deployment in [CLASSIC, *drawn]:
        settings = answer(deployment.processes, deployment.threads, deployment.max_connections, deployment.kept_free)
        verdict = sizing_verdict(settings, deployment)
        failed = next((claim for claim, holds in verdict.items() if not holds), None)
        if failed:
            raise Unmet(f"for {deployment}: “{failed}” does not hold")
    return verdict


HANDLE_STARTER = '''
def handle(engine, user_id):
    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
        time.sleep(0.5)   # slow work: rendering the invoice
    return name
'''
RENDER_SECONDS = 0.5  # the slow work of the starter; the checker observes each sleep and waits a fifth of it
LONG_CHECKOUT = 0.8 * RENDER_SECONDS  # a checkout this long held slow work that was not time.sleep (a query: ~1 ms)
HELD_NOTHING_SLOW = (f"no request did its slow work while it held a connection (a time.sleep, or a checkout of "
                     f"{LONG_CHECKOUT:g} s or more)")
SLEEP_SCALE = 0.2
USERS = 500  # the users a burst draws from (any scale has them)
NAMES_SCHEMA = "nb01"  # the checker's engine finds `users` here first: a scratch copy whose names only a query returns
BURST_EXPECTED: dict[str, Any] = {
    "requests that failed": 0,
    "the pool is the one given (its size, no overflow, its pool_timeout)": True,
    "each request took one connection from the pool it was given and queried through it": True,
    HELD_NOTHING_SLOW: True,
    "every request still rendered its invoice (time.sleep(0.5))": True,
}

Q2 = Question(
    name="q2",
    text="handle(engine, user_id) holds its connection while it renders an invoice (time.sleep(0.5)). When more "
         "requests arrive at once than the pool has connections, the ones that wait past pool_timeout fail.\n\n"
         "Change handle() so that every request succeeds with the same result. Each request still renders its invoice, "
         "queries through the engine it is given, and takes one connection from that pool, which stays as it is. The "
         "checker draws the pool's size, the burst and the users. It watches every time.sleep (none may happen while "
         "the request holds a connection) and how long each request keeps its connection.",
    shape="`def handle(engine, user_id)` returning the user's name, defined in the cell; then `q2.check(handle)`.",
    hint_text="Which lines of handle() need the connection, and which only need the name?",
    solution_code="def handle(engine, user_id):\n"
                  "    with engine.connect() as conn:\n"
                  "        name = conn.execute(text(\"SELECT name FROM users WHERE id = :id\"),\n"
                  "                            {\"id\": user_id}).scalar()\n"
                  "    time.sleep(0.5)   # slow work, after the connection went back to the pool\n"
                  "    return name\n\nq2.check(handle)",
    discussion="Why it works: only the query needs the connection. Leaving the `with engine.connect()` block before "
               "the slow work gives it back after about a millisecond. A small pool then serves a burst as fast as its "
               "queries run, not as slowly as its invoices render.\n"
               "Common wrong answers:\n"
               "- a bigger pool or more overflow: the next burst is bigger, and the server's slots run out first;\n"
               "- retrying on TimeoutError: still one connection held per invoice being rendered;\n"
               "- an engine of one's own with NullPool: a new server session per request, outside the pool's limit;\n"
               "- fetching every name up front: not the query the request asked for.")


def scratch_users(wb: Workbook) -> None:
    """A scratch `users` table in nb01 whose names differ from the real ones (reversed), for the first USERS users:
    a handle() that does not query through the engine it is given (names fetched up front, hard-coded) returns the
    wrong names. Every column is copied, so the ORM's User (session.get selects them all) loads from it too. Made
    again at each check, in case a cell changed it."""
    from sqlalchemy import text

    with wb.engine.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))  # never wait forever on an earlier answer still running
        conn.execute(text(f"DROP TABLE IF EXISTS {NAMES_SCHEMA}.users"))
        conn.execute(text(f"CREATE TABLE {NAMES_SCHEMA}.users AS SELECT * FROM public.users WHERE id <= {USERS}"))
        conn.execute(text(f"UPDATE {NAMES_SCHEMA}.users SET name = initcap(reverse(name)) || ' ' || id"))


def user_ids(wb: Workbook) -> list[int]:
    """The ids a burst draws its users from."""
    from sqlalchemy import text

    with wb.engine.connect() as conn:
        return list(conn.execute(text(f"SELECT id FROM public.users WHERE id <= {USERS} ORDER BY id")).scalars())


@dataclass(frozen=True)
class Burst:
    """One drawn burst: the pool's size and pool_timeout, and the users whose invoices arrive at once."""

    pool_size: int
    timeout: float
    user_ids: list[int]


def draw_burst(draw: Draw, ids: list[int]) -> Burst:
    """A pool of 1 to 3 connections, a burst of at least two requests more than that (up to four times it)."""
    size = draw.integer("pool size", 1, 3)
    requests = draw.integer("requests at once", size + 2, 4 * size)
    # pool_timeout long enough for a right answer on a busy machine: holding a connection is seen, not timed
    return Burst(size, draw.number("pool_timeout", 1.0, 2.0), draw.sample("user ids", ids, requests))


def burst_verdict(wb: Workbook, handle: Callable[[Engine, int], Any], burst: Burst) -> dict[str, Any]:
    """Run `handle(engine, user_id)` for the burst's users at once on the burst's pool.

    The pool's events say how each request used it (connections opened, checkouts per thread and how long each lasted,
    statements sent through it); time.sleep is observed with what each thread held at that moment, and really waits a
    fifth, so slow work of another kind shows as a checkout of LONG_CHECKOUT or more.
    """
    from sqlalchemy import event

    from ..pooling import watch_pool
    from ..workload import run_together

    scratch_users(wb)
    engine = wb.make_engine(pool_size=burst.pool_size, max_overflow=0, pool_timeout=burst.timeout,
                            connect_args={"options": f"-c search_path={NAMES_SCHEMA},public"})
    pool, lock = engine.pool, threading.Lock()
    held: dict[int, int] = {}
    workers: set[int] = set()
    statements = [0]
    since: dict[int, float] = {}   # each connection record's checkout time
    longest = [0.0]                # the longest checkout seen, in seconds

    def on_checkout(dbapi_conn, record, proxy) -> None:
        with lock:
            held[threading.get_ident()] = held.get(threading.get_ident(), 0) + 1
            since[id(record)] = time.perf_counter()

    def on_checkin(dbapi_conn, record) -> None:
        with lock:
            held[threading.get_ident()] = held.get(threading.get_ident(), 0) - 1
            if id(record) in since:
                longest[0] = max(longest[0], time.perf_counter() - since.pop(id(record)))

    def on_statement(*_args) -> None:
        with lock:
            statements[0] += 1

    def request(lane: Any) -> Any:
        workers.add(threading.get_ident())
        return handle(engine, burst.user_ids[lane.worker])

    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        with watch_pool(engine) as watch, observed_sleep(handle, scale=SLEEP_SCALE,
                                                         note=lambda: held.get(threading.get_ident(), 0) > 0,
                                                         watched=lambda: threading.get_ident() in workers) as sleeps:
            run = run_together(request, len(burst.user_ids), timeout=30)
        same_pool = (engine.pool is pool and pool.size() == burst.pool_size and pool._max_overflow == 0
                     and pool.timeout() == burst.timeout and watch.connects <= burst.pool_size)
    finally:
        pool.dispose()
        engine.dispose()
    crashed = run.outcomes[~run.outcomes["outcome"].isin(["ok", "TimeoutError"])]
    if len(crashed):  # a bug in handle() itself: say what it raised rather than "requests that failed"
        raise RuntimeError(f"handle() raised {crashed['outcome'].iloc[0]}: {crashed['error'].iloc[0]}")
    slept = {t: sum(s.seconds for s in sleeps if s.thread == t) for t in workers}
    n = len(burst.user_ids)
    return {"requests that failed": n - run.count("ok"),
            "results": run.outcomes["result"].tolist(),  # the scratch names: only a real query returns them
            "the pool is the one given (its size, no overflow, its pool_timeout)": same_pool,
            "each request took one connection from the pool it was given and queried through it":
                watch.checkouts == n and statements[0] >= n,
            HELD_NOTHING_SLOW: not any(s.note for s in sleeps) and longest[0] < LONG_CHECKOUT,
            "every request still rendered its invoice (time.sleep(0.5))":
                run.count("ok") == n and len(slept) == n and min(slept.values()) >= RENDER_SECONDS * 0.999}


def burst_expected(wb: Workbook, burst: Burst) -> dict[str, Any]:
    """The verdict a right answer gets: the fixed claims, and the scratch names of the burst's users, read directly."""
    from sqlalchemy import text

    with wb.engine.connect() as conn:
        names = dict(conn.execute(text(f"SELECT id, name FROM {NAMES_SCHEMA}.users WHERE id = ANY(:ids)"),
                                  {"ids": burst.user_ids}).all())
    return {**BURST_EXPECTED, "results": [names[i] for i in burst.user_ids]}


def handle_fixed(engine: Engine, user_id: int) -> str:
    """Reference for q2: the connection goes back to the pool before the slow work."""
    from sqlalchemy import text

    with engine.connect() as conn:
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id}).scalar()
    time.sleep(RENDER_SECONDS)  # slow work: rendering the invoice
    return name


KILL_EXPECTED = {"the requests after the kill succeeded": True,
                 "the engine keeps a bounded QueuePool (pool_size ≥ 1, max_overflow ≥ 0)": True,
                 "a connection is reused from one request to the next": True}

Q3 = Question(
    name="q3",
    text="The server restarted: every backend behind your engine's pool is gone. Which create_engine options make "
         "the requests after that succeed, while the engine keeps pooling (the default QueuePool, bounded, each "
         "connection reused from request to request)? The checker draws how many connections the pool holds when "
         "they die and how many requests follow.",
    shape="a dict of create_engine options, e.g. `q3.check({'option_name': value})`.",
    hint_text="§6: when could the pool find out that a connection died, without giving up on reuse?",
    solution_code="q3.check({'pool_pre_ping': True})",
    discussion="Why it works: pool_pre_ping=True tests a pooled connection as it is checked out (one round trip; one "
               "the pool has just opened is not tested). A failed test replaces that connection and every one opened "
               "before it, without the request noticing, and the connections stay pooled.\n"
               "Common wrong answers:\n"
               "- pool_recycle=3600: it renews a connection at checkout once it is an hour old, however recently it "
               "was used, and a restart comes whenever it comes;\n"
               "- a tiny pool_recycle: nearly every checkout renews its connection, so nothing is pooled any more;\n"
               "- NullPool: nothing goes stale because nothing is pooled (a connection per request);\n"
               "- pool_size=0 or max_overflow=-1 next to pool_pre_ping: an unbounded pool.")


def kill_verdict(wb: Workbook, engine_options: dict[str, Any], draw: Draw) -> dict[str, bool]:
    """An engine with these options, its pool filled to a drawn level: after its backends are killed, do a drawn
    number of requests succeed, and does it still pool (a bounded QueuePool, one connection reused across requests
    further apart than the kill took)?"""
    from sqlalchemy import exc, text
    from sqlalchemy.pool import QueuePool

    from ..pooling import terminate

    if not isinstance(engine_options, dict):
        raise WrongKind(f"answer with a dict of create_engine options, not a {type(engine_options).__name__}")
    ping = engine_options.get("pool_pre_ping", False)
    if not isinstance(ping, numbers.Integral):   # SQLAlchemy reads any truthy value as True: 'no' would turn it on
        raise WrongKind(f"pool_pre_ping takes True or False, not {ping!r}")
    engine = wb.make_engine(**engine_options)
    if type(engine.pool) is not QueuePool:  # before anything calls QueuePool's methods on another pool class
        engine.dispose()
        raise WrongKind(f"the engine must keep the default QueuePool; these options give it a "
                        f"{type(engine.pool).__name__}")
    bounded = engine.pool.size() >= 1 and engine.pool._max_overflow >= 0  # 0 and -1 mean "no limit" to SQLAlchemy
    fill = draw.integer("connections open at the kill", 1, min(5, max(engine.pool.size(), 1)))   # what the pool holds
    requests = draw.integer("requests after the kill", 1, 3)
    start, failed = time.perf_counter(), 0
    try:
        held = [engine.connect() for _ in range(fill)]
        pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in held]
        for conn in held:
            conn.close()  # back to the pool, still open
        terminate(wb.url, pids)
        for _ in range(requests):
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except exc.DBAPIError:
                failed += 1
        span = time.perf_counter() - start  # the oldest a connection could be at the first request after the kill
    finally:
        engine.dispose()
    verdict = {"the requests after the kill succeeded": failed == 0,
               "the engine keeps a bounded QueuePool (pool_size ≥ 1, max_overflow ≥ 0)": bounded,
               "a connection is reused from one request to the next": False}
    if failed or not bounded:
        return verdict  # the first claim that fails is what the learner is told: no need to wait for the third
    fresh = wb.make_engine(**engine_options)
    try:
        backends = []
        for _ in range(2):
            with fresh.connect() as conn:
                backends.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
            threading.Event().wait(span + 0.1)  # a connection renewed by age at the kill is renewed here too
    finally:
        fresh.dispose()
    verdict["a connection is reused from one request to the next"] = backends[0] == backends[1]
    return verdict


QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook, *names: str) -> Any:
    """The exercises of notebook 01 bound to this notebook's database: all three as a tuple (q1, q2, q3), the ones
    `names` asks for as a tuple (each Part loads its own: `q1, q2 = nb01.load(wb, "q1", "q2")`), or one exercise
    when one name is given (`q3 = nb01.load(wb, "q3")`)."""
    unknown = set(names) - {"q1", "q2", "q3"}
    if unknown:
        raise ValueError(f"notebook 01 has the exercises q1, q2 and q3, not {', '.join(sorted(unknown))}")
    ids = user_ids(wb) if not names or "q2" in names else []

    q1 = Q1.exercise(reference=lambda draw: sizing(pool_settings_reference, draw), evaluate=sizing,
                     starter=POOL_SETTINGS_STARTER, drawn=True)
    q2 = Q2.exercise(reference=lambda draw: burst_expected(wb, draw_burst(draw, ids)),
                     evaluate=lambda handle, draw: burst_verdict(wb, _function(handle, "handle"), draw_burst(draw, ids)),
                     starter=HANDLE_STARTER, drawn=True)
    q3 = Q3.exercise(reference=lambda draw: dict(KILL_EXPECTED),
                     evaluate=lambda options, draw: kill_verdict(wb, options, draw), drawn=True)
    chosen = [{"q1": q1, "q2": q2, "q3": q3}[name] for name in names or ("q1", "q2", "q3")]
    return chosen[0] if len(names) == 1 else tuple(chosen)


def _function(answer: Any, name: str) -> Any:
    if not callable(answer) or isinstance(answer, type):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer
