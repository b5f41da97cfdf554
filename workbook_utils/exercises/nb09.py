"""Exercises of notebook 09 (pools in production): a fork-safe worker, a timeout safe behind PgBouncer, a sizing chain.

q1 forks real workers from an engine that already pooled a connection and compares backend pids; q2 runs the
learner's function through a PgBouncer pool of one server connection (with a statement_timeout of its own) and lets
another client use that connection next (a time.sleep in the answer is observed, not waited); q3 runs the learner's
sizing function on three deployments drawn afresh, its numbers through SQLAlchemy's own QueuePool
and the chain's inequalities.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from numbers import Integral
from typing import TYPE_CHECKING, Any

from . import Question, WrongKind
from .draws import Draw
from .faults import observed_sleep

if TYPE_CHECKING:
    from ..pgbouncer import PgBouncer
    from ..workbook import Workbook

FORK_EXPECTED = {"worker_init ran without an error": True,
                 "each worker's backends differ from the parent's": True,
                 "the two workers have backends of their own": True,
                 "a worker's two threads get two connections at once": True,
                 "a worker reuses its connections from one request to the next": True,
                 "the parent's pooled connection still works afterwards": True}


def _worker(engine, worker_init, queue) -> None:
    """In the forked child: the learner's init, then twice two checkouts held at once (two threads' requests);
    report the backend pids of each round (or the error)."""
    from sqlalchemy import text

    try:
        worker_init(engine)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the answer's failure
        queue.put(("init", f"{type(exc).__name__}: {exc}"))
        return
    try:
        rounds = []
        for _ in range(2):
            with engine.connect() as first, engine.connect() as second:
                rounds.append([c.execute(text("SELECT pg_backend_pid()")).scalar() for c in (first, second)])
        queue.put(("ok", rounds))
    except Exception as exc:  # noqa: BLE001
        queue.put(("query", f"{type(exc).__name__}: {exc}"))


def fork_verdict(wb: Workbook, worker_init: Callable[[Any], Any]) -> dict[str, bool]:
    """Pool a connection in the parent, fork two workers one after the other (never at once: a shared socket used
    by two processes at once corrupts the protocol), each runs `worker_init(engine)` then two rounds of requests."""
    from sqlalchemy import exc, text

    if not callable(worker_init):
        raise WrongKind(f"answer with a function worker_init(engine), not a {type(worker_init).__name__}")
    if "fork" not in multiprocessing.get_all_start_methods():
        raise WrongKind("this check forks processes, which needs a POSIX system (Linux, macOS): compare with q1.solution()")
    engine = wb.make_engine(pool_size=2, max_overflow=0, pool_timeout=5)
    fork = multiprocessing.get_context("fork")
    try:
        with engine.connect() as conn:
            parent = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        reports = []
        for _ in range(2):
            queue = fork.SimpleQueue()
            child = fork.Process(target=_worker, args=(engine, worker_init, queue))
            child.start()
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(5)
            reports.append(queue.get() if not queue.empty() else ("query", "the worker did not answer within 10 s"))
        try:
            with engine.connect() as conn:
                parent_ok = conn.execute(text("SELECT pg_backend_pid()")).scalar() == parent
        except exc.DBAPIError:
            parent_ok = False
    finally:
        engine.dispose()
    if any(r[0] == "query" for r in reports):
        raise RuntimeError(next(r[1] for r in reports if r[0] == "query"))
    ran = [r[1] for r in reports if r[0] == "ok"]  # per worker: [[pid, pid], [pid, pid]]
    used = [{pid for round_ in rounds for pid in round_} for rounds in ran]
    both = len(ran) == 2
    return {"worker_init ran without an error": both,
            "each worker's backends differ from the parent's": both and all(parent not in u for u in used),
            "the two workers have backends of their own": both and not used[0] & used[1],
            "a worker's two threads get two connections at once": both and all(
                len(set(round_)) == 2 for rounds in ran for round_ in rounds),
            "a worker reuses its connections from one request to the next": both and all(
                set(rounds[0]) == set(rounds[1]) for rounds in ran),
            "the parent's pooled connection still works afterwards": parent_ok}


WORKER_STARTER = '''
def worker_init(engine):
    pass   # your code here
'''


def worker_init_reference(engine) -> None:
    engine.dispose(close=False)  # forget the parent's connections without closing them


OWN_TIMEOUT = "4321ms"  # what the server connection already has (a role's or a connect setting) before the answer runs
OWN_TIMEOUTS = (2001, 29999)  # q2 draws it afresh for each check, in milliseconds and never whole seconds: an answer
# cannot guess the value to restore (a hard-coded '5s' or '30s' never matches)
NEXT_CLIENT = ("the next client of the same server connection finds its settings as they were (its own "
               "statement_timeout, drawn for this check, and no other setting, role, lock or object left behind)")
OPEN = "the caller's transaction is still open, with its own work in it, when your function returns"
TIMEOUT_EXPECTED: dict[str, Any] = {
    "your function ran the statement on the connection it was given": True,
    OPEN: True,
    "a 1 s statement is cancelled by the server (statement_timeout applied)": True,
    "the timeout your function set is 100ms": True,
    "a quick statement returns its result": True,
    NEXT_CLIENT: True,
}
# What a session leaves on its server connection for the next client: its role, the settings it set for itself
# (PgBouncer re-applies these few for each client itself, see §4), prepared statements, advisory locks, temporary
# tables, channels it listens on; and settings stored for the role (ALTER ROLE … SET), for every new connection
SESSION_STATE = """SELECT concat_ws(' | ', current_user,
    (SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE source = 'session'
       AND lower(name) NOT IN ('application_name', 'client_encoding', 'datestyle', 'timezone',
                               'standard_conforming_strings', 'intervalstyle')),
    (SELECT count(*) FROM pg_prepared_statements) || ' prepared',
    (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') || ' advisory',
    (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) || ' temporary',
    (SELECT count(*) FROM pg_listening_channels()) || ' listening',
    (SELECT string_agg(array_to_string(setconfig, ','), ';') FROM pg_db_role_setting
      WHERE setrole = (SELECT oid FROM pg_roles WHERE rolname = session_user)))"""
LIMITED_STARTER = '''
def limited(conn, sql):
    conn.execute(text("SET statement_timeout = '100ms'"))
    return conn.execute(text(sql)).scalar()
'''


def _on_the_server_connection(bouncer: PgBouncer, database: str, sql: str) -> str | None:
    """Run `sql` as a client of its own (autocommit) on the database's server connection; its first value if any."""
    import psycopg

    with psycopg.connect(bouncer.url(database, "postgresql"), autocommit=True, prepare_threshold=None,
                         connect_timeout=5) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchone()[0] if cursor.description else None


def timeout_verdict(bouncer: PgBouncer | None, limited: Callable[[Any, str], Any], database: str = "single",
                    application_name: str = "workbook-nb09", own_timeout: str = OWN_TIMEOUT) -> dict[str, Any]:
    """Run `limited(conn, sql)` through PgBouncer (one server connection, transaction mode), each call in a
    transaction that commits when it succeeds (a request's unit of work); then another client uses that connection.

    That server connection starts with a statement_timeout of its own (`own_timeout`): an answer that sets the timeout
    for the session and "undoes" it afterwards (`SET … = 0`, `RESET`) leaves the next client a different one.
    """
    import psycopg
    from sqlalchemy import create_engine, event, exc, text
    from sqlalchemy.pool import NullPool

    if bouncer is None:
        raise WrongKind("this check needs PgBouncer (see §3 of the notebook for how to install it)")
    if not callable(limited):
        raise WrongKind(f"answer with a function limited(conn, sql), not a {type(limited).__name__}")
    engine = create_engine(bouncer.url(database), poolclass=NullPool,
                           connect_args={"application_name": application_name, "prepare_threshold": None})
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, statement, *a: seen.append(statement))
    slow, quick = "SELECT pg_sleep(1)", "SELECT count(*) FROM users"
    setting = "SELECT set_config('workbook.seen', current_setting('statement_timeout'), true)"   # as it runs
    checker = threading.get_ident()
    try:
        _on_the_server_connection(bouncer, database, f"SELECT set_config('statement_timeout', '{own_timeout}', false)")
        settings = _on_the_server_connection(bouncer, database, SESSION_STATE)
        with observed_sleep(limited, watched=lambda: threading.get_ident() == checker):  # a sleep costs no time
            try:
                with engine.begin() as conn:
                    limited(conn, slow)
                cancelled = False
            except (exc.OperationalError, psycopg.errors.QueryCanceled) as error:  # also from a connection of its own
                cancelled = isinstance(getattr(error, "orig", None), psycopg.errors.QueryCanceled)  # not by hand
            with engine.begin() as conn:
                conn.execute(text("SELECT set_config('workbook.caller', 'work', true)"))   # the caller's own work
                limited(conn, setting)
                timeout, caller = _after(conn, "SELECT current_setting('workbook.seen', true), "
                                               "current_setting('workbook.caller', true)")
            with engine.begin() as conn:
                result = limited(conn, quick)
        answered = list(seen)  # what went through the engine while the answer ran (the checker's own come next)
        left = _on_the_server_connection(bouncer, database, "SHOW statement_timeout")
        left_settings = _on_the_server_connection(bouncer, database, SESSION_STATE)
        with engine.connect() as conn:
            expected = conn.execute(text(quick)).scalar()
    finally:
        _on_the_server_connection(bouncer, database, "DISCARD ALL")  # whatever is left on the server connection goes
        engine.dispose()
    return {"your function ran the statement on the connection it was given": all(
                sql in answered for sql in (slow, setting, quick)),
            "a 1 s statement is cancelled by the server (statement_timeout applied)": cancelled,
            "the timeout your function set is 100ms": timeout == "100ms",   # read as the statement ran
            OPEN: caller == "work",
            "a quick statement returns its result": result == expected,
            NEXT_CLIENT: left == own_timeout and left_settings == settings}


def _after(conn: Any, sql: str) -> tuple[Any, ...]:
    """What `sql` reads in the caller's transaction after the answer ran; (None, None) if that transaction is gone."""
    from sqlalchemy import exc, text

    try:
        return tuple(conn.execute(text(sql)).one())
    except exc.SQLAlchemyError:   # the answer closed or ended the caller's transaction
        return None, None


def limited_reference(conn, sql):
    from sqlalchemy import text

    conn.execute(text("SELECT set_config('statement_timeout', '100ms', true)"))  # SET LOCAL: this transaction only
    return conn.execute(text(sql)).scalar()


EXAMPLE = {"processes": 6, "threads": 4, "max_connections": 100, "reserved": 3, "headroom": 10,
           "server_queries": 16, "files": 48}
CHAIN = ("sizing(d) gets a deployment d: d['processes'] web processes with d['threads'] threads each talk to one "
         "database as one role, through PgBouncer in transaction mode. The server has d['max_connections'] "
         "(d['reserved'] of them reserved for superusers), you keep d['headroom'] for migrations and admin, and its "
         "cores run d['server_queries'] queries at once at best. PgBouncer may open d['files'] files for its client "
         "and server connections (a tight limit: fewer than 10 to spare). Return each process's pool_size and "
         "max_overflow, and PgBouncer's max_client_conn and default_pool_size, so that every thread gets a "
         "connection at once without opening one per request, PgBouncer never refuses a client, and exactly "
         "d['server_queries'] queries can run on the server at once. "
         f"(For example d = {EXAMPLE}. The check calls sizing on three deployments drawn afresh for each check.)")
CHAIN_KEYS = {"pool_size", "max_overflow", "max_client_conn", "default_pool_size"}
DEPLOYMENTS = 3
CHAIN_EXPECTED = {"sizing(d) returns a dict of the four settings": True,
                  "numbers are whole and not negative": True,
                  "every thread of a process gets a connection at once": True,
                  "connections stay open between requests": True,
                  "processes × (pool_size + max_overflow) ≤ max_client_conn": True,
                  "PgBouncer's clients and server connections fit its file limit": True,
                  "default_pool_size × 1 database × 1 role ≤ max_connections − reserved − headroom": True,
                  "server_queries queries, no more, run on the server at once": True}
SIZING_STARTER = ("def sizing(d):\n"
                  "    return {\"pool_size\": ____, \"max_overflow\": ____, \"max_client_conn\": ____, "
                  "\"default_pool_size\": ____}\n")


def deployment(rng: Any, big: bool = False) -> dict[str, int]:
    """A deployment for q3: sizes drawn so that one sizing fits every link (the reference's). A big one has more
    than 12 threads a process and more than 100 clients, past a pool capped at 10 or PgBouncer's default 100. The
    file limit leaves fewer than 10 files spare, so a pool or max_client_conn oversized "to be safe" does not fit."""
    processes, threads = (rng.randint(9, 16), rng.randint(13, 24)) if big else (rng.randint(2, 12), rng.randint(2, 12))
    queries = rng.randint(4, 40)
    reserved, headroom = 3, rng.randint(5, 20)
    return {"processes": processes, "threads": threads, "server_queries": queries, "reserved": reserved,
            "headroom": headroom, "max_connections": queries + reserved + headroom + rng.randint(0, 200),
            "files": processes * threads + queries + rng.randint(0, 9)}


def chain_verdict(answer: dict[str, int], d: dict[str, int] = EXAMPLE) -> dict[str, bool]:
    """The chain processes → PgBouncer → server for deployment `d`, each link checked as SQLAlchemy and PgBouncer
    read the numbers."""
    from .nb01 import _StandIn

    verdict = dict.fromkeys(CHAIN_EXPECTED, False)
    if not isinstance(answer, dict) or set(answer) != CHAIN_KEYS:
        return verdict
    verdict["sizing(d) returns a dict of the four settings"] = True
    whole = all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in answer.values())  # numpy's too
    verdict["numbers are whole and not negative"] = whole
    if not whole:
        return verdict
    answer = {key: int(value) for key, value in answer.items()}  # np.int64(4) as 4: each link's verdict a plain bool
    from sqlalchemy import exc
    from sqlalchemy.pool import QueuePool

    opened: list[int] = []
    pool = QueuePool(lambda: opened.append(1) or _StandIn(), pool_size=answer["pool_size"],
                     max_overflow=answer["max_overflow"], timeout=0.01)
    held = []
    try:
        for _ in range(4 * d["files"]):  # how many this process's pool would open at most (0 or -1 mean "no limit")
            held.append(pool.connect())
    except exc.TimeoutError:
        pass
    most = len(held)
    for conn in held:
        conn.close()
    verdict["every thread of a process gets a connection at once"] = most >= d["threads"]
    before = len(opened)
    for _ in range(3):  # steady load: every thread takes one, then gives it back
        round_ = [pool.connect() for _ in range(min(d["threads"], most))]
        for conn in round_:
            conn.close()
    verdict["connections stay open between requests"] = len(opened) == before
    pool.dispose()
    server = answer["default_pool_size"]
    verdict["processes × (pool_size + max_overflow) ≤ max_client_conn"] = d["processes"] * most <= answer["max_client_conn"]
    verdict["PgBouncer's clients and server connections fit its file limit"] = answer["max_client_conn"] + server <= d["files"]
    verdict["default_pool_size × 1 database × 1 role ≤ max_connections − reserved − headroom"] = (
        server <= d["max_connections"] - d["reserved"] - d["headroom"])
    verdict["server_queries queries, no more, run on the server at once"] = server == d["server_queries"]
    return verdict


def sizing_verdict(sizing: Callable[[dict[str, int]], dict[str, int]], draw: Draw) -> dict[str, bool]:
    """`sizing` on DEPLOYMENTS deployments drawn for this check: a link holds only if it holds in every one."""
    if not callable(sizing):
        raise WrongKind("answer with a function sizing(d) that returns the dict of four settings for deployment d")
    verdict = dict(CHAIN_EXPECTED)
    big = draw.integer("the big deployment", 1, DEPLOYMENTS)
    for i in range(1, DEPLOYMENTS + 1):
        d = draw.pick(f"deployment {i}", lambda rng, i=i: deployment(rng, big=i == big))
        for link, holds in chain_verdict(sizing(dict(d)), d).items():
            verdict[link] = verdict[link] and holds
    return verdict


def sizing_reference(d: dict[str, int]) -> dict[str, int]:
    return {"pool_size": d["threads"], "max_overflow": 0, "max_client_conn": d["processes"] * d["threads"],
            "default_pool_size": d["server_queries"]}


Q1 = Question(
    name="q1",
    text="A worker process is forked from a parent whose engine already pooled a connection (gunicorn --preload, "
         "multiprocessing with the fork start method, Celery prefork). Write worker_init(engine), run first in each "
         "worker, so that every worker talks to the server on connections of its own, still pools them (one per "
         "thread), and the parent's pooled connection keeps working. (The check forks two workers and compares "
         "backend pids.)",
    shape="`def worker_init(engine)` (it returns nothing), defined in the cell; then `q1.check(worker_init)`.",
    hint_text="§1 showed SQLAlchemy's recipe. What must a worker forget, and what must it not do to the "
              "parent's sockets while forgetting?",
    solution_code="def worker_init(engine):\n    engine.dispose(close=False)\n\nq1.check(worker_init)",
    discussion="Why it works: `dispose(close=False)` gives the worker a new, empty pool and drops the inherited "
               "connections without closing their sockets, so the parent's sessions live on.\n"
               "Common wrong answers:\n"
               "- nothing: the worker checks out the parent's connection, two processes on one session;\n"
               "- `engine.dispose()`: it closes the inherited sockets, which ends the parent's sessions;\n"
               "- a `NullPool` in the worker: sessions of its own, but a new connection for every request;\n"
               "- a `StaticPool` or `SingletonThreadPool`: one connection shared by threads, or one per thread.",
)
Q2 = Question(
    name="q2",
    text="limited(conn, sql) must run `sql` on `conn` (a SQLAlchemy Connection through PgBouncer in transaction "
         "mode, inside a transaction its caller commits) with a statement_timeout of 100 ms, and return the first "
         "column of the first row. The starter leaks its timeout to whichever client gets the server connection "
         "next. Fix it: the next client must find the server connection's settings as they were (the check's one "
         "server connection has a statement_timeout of its own, drawn afresh for each check).",
    shape="`def limited(conn, sql)` returning one value, defined in the cell; then `q2.check(limited)`.",
    hint_text="§4 fixed the leaked SET. Which form of a setting ends with the transaction it was made in?",
    solution_code=("def limited(conn, sql):\n"
                   "    conn.execute(text(\"SELECT set_config('statement_timeout', '100ms', true)\"))\n"
                   "    return conn.execute(text(sql)).scalar()\n\nq2.check(limited)"),
    discussion="Why it works: `set_config(…, true)` is `SET LOCAL`: the setting ends with the transaction, before "
               "PgBouncer lends the server connection to the next client.\n"
               "Common wrong answers:\n"
               "- a session `SET` (or `set_config(…, false)`): the next client inherits 100 ms;\n"
               "- `SET` then `SET … = 0` or `RESET`: the next client loses the timeout the connection had;\n"
               "- `conn.commit()` or `conn.rollback()` inside the function: it ends the caller's unit of work, not "
               "only the setting;\n"
               "- another setting left behind (a session `SET lock_timeout`): the next client inherits it too;\n"
               "- a timeout that is not 100 ms, or a `QueryCanceled` raised by hand: the server did not cancel it.",
)
Q3 = Question(
    name="q3",
    text=CHAIN,
    shape='`def sizing(d)` returning `{"pool_size": …, "max_overflow": …, "max_client_conn": …, '
          '"default_pool_size": …}` computed from d; then `q3.check(sizing)`.',
    hint_text="Work from both ends: the threads of one process fix the application pool; the server's cores "
              "fix PgBouncer's pool. max_client_conn sits between.",
    solution_code=('def sizing(d):\n'
                   '    return {"pool_size": d["threads"], "max_overflow": 0,\n'
                   '            "max_client_conn": d["processes"] * d["threads"], '
                   '"default_pool_size": d["server_queries"]}\n\nq3.check(sizing)'),
    discussion="Why it works: a pool of d['threads'] per process (no overflow) serves every thread and keeps its "
               "connections; processes × threads clients fit max_client_conn and the file limit; "
               "default_pool_size = d['server_queries'] is what the cores run.\n"
               "Common wrong answers:\n"
               "- numbers worked out for one deployment: the next one has other threads and cores;\n"
               "- pool_size = 0: to SQLAlchemy that means no limit, not no pool;\n"
               "- a default_pool_size up to max_connections: the server queues what its cores cannot run;\n"
               "- a pool or max_client_conn larger than the threads need, to be safe: the file limit has no room "
               "for it, and a pool PgBouncer cannot serve fails at the busiest moment;\n"
               "- a pool_size below the threads with max_overflow making up the rest: overflow connections close "
               "at checkin and reopen on the next request.",
)


def own_timeout(draw: Draw) -> str:
    """The statement_timeout q2's server connection has before the answer runs, drawn for this check: milliseconds
    that are not whole seconds (PostgreSQL shows them as they are, e.g. 12345ms)."""
    low, high = OWN_TIMEOUTS
    return draw.pick("the server connection's own statement_timeout",
                     lambda rng: f"{rng.randint(low // 1000, high // 1000) * 1000 + rng.randint(1, 999)}ms", show=str)


QUESTIONS = {q.name: q for q in (Q1, Q2, Q3)}


def load(wb: Workbook, *names: str, bouncer: Callable[[], PgBouncer | None] = lambda: None) -> Any:
    """The exercises of notebook 09: all three as a tuple (q1, q2, q3), the ones `names` asks for as a tuple, or one
    exercise when one name is given. q2 runs through the PgBouncer `bouncer()` returns when it checks (the notebook's
    current one, even after §3 restarted it; None: it says how to install one)."""
    unknown = set(names) - set(QUESTIONS)
    if unknown:
        raise ValueError(f"notebook 09 has the exercises q1, q2 and q3, not {', '.join(sorted(unknown))}")
    made = {"q1": Q1.exercise(reference=lambda: fork_verdict(wb, worker_init_reference),
                              evaluate=lambda answer: fork_verdict(wb, answer), starter=WORKER_STARTER),
            "q2": Q2.exercise(reference=lambda draw: TIMEOUT_EXPECTED, starter=LIMITED_STARTER, drawn=True,
                              evaluate=lambda answer, draw: timeout_verdict(
                                  bouncer(), answer, application_name=wb.app_name, own_timeout=own_timeout(draw))),
            "q3": Q3.exercise(reference=lambda draw: CHAIN_EXPECTED, evaluate=sizing_verdict, drawn=True,
                              starter=SIZING_STARTER)}
    chosen = [made[name] for name in names or ("q1", "q2", "q3")]
    return chosen[0] if len(names) == 1 else tuple(chosen)
