"""Real server errors injected into the learner's code, and `time.sleep` observed rather than trusted.

A retry loop is only tested when it meets each error it claims to handle. `inject` makes chosen statements of an
engine fail, each with the error PostgreSQL itself raises, so the learner's code gets the very exceptions
production gives it (`sqlalchemy.exc.OperationalError` / `IntegrityError` wrapping psycopg's `SerializationFailure`,
`DeadlockDetected`, `QueryCanceled`, `UniqueViolation`):

- 40001: the learner's transaction reads a row, another session updates it and commits, the learner's UPDATE of it
  fails (REPEATABLE READ or SERIALIZABLE; a READ COMMITTED transaction that already ran a statement cannot meet a
  real one, and gets the SQLSTATE from `RAISE … USING ERRCODE` instead);
- 40P01: the learner's statement and another session lock two rows in opposite orders; the learner waits first, so
  the server's deadlock detector aborts the learner's transaction;
- 57014: another session cancels the learner's running statement (`pg_cancel_backend`);
- 23505: the learner's statement inserts a key that exists.

    prepare(wb.url, "nb04")
    with inject(engine, wb.url, "nb04", ["40001", "40P01", None], match=lambda sql: "accounts" in sql) as seen:
        run_with_retry(engine, work)      # its 1st and 2nd statements on accounts fail, the 3rd runs
    seen.done        # what was injected, and whether the server's own machinery raised it (`genuine`)
    seen.errors      # the SQLAlchemy exceptions the learner's code received, to compare with what it re-raised

`observed_sleep` records each `time.sleep` call (its thread, the seconds asked, and what `note()` said at that
moment) and really sleeps only `scale` × those seconds, so a backoff is read, not waited for.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

FAULTS = {"40001": "serialization failure", "40P01": "deadlock detected", "57014": "statement cancelled",
          "23505": "unique violation"}
TABLE = "fault_rows"  # in the checker's scratch schema: rows the injected errors fight over
MARK = "/* workbook fault {} */"  # in the statement the learner's connection runs in place of its own
WAIT = 5.0  # seconds any helper session waits at most
ROWS = 1000  # rows 1..ROWS exist from `prepare` on, so that every snapshot sees them (0 is the duplicate key)


def prepare(url: str, schema: str) -> None:
    """Create the table the injected errors use, in `schema` (idempotent)."""
    from .. import db

    with db.connect(url) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{TABLE} (k bigint PRIMARY KEY, n int NOT NULL DEFAULT 0); "
                     f"INSERT INTO {schema}.{TABLE} (k) SELECT generate_series(0, {ROWS}) ON CONFLICT DO NOTHING")


@dataclass
class Injected:
    """One injected error: its SQLSTATE, the learner's statement it replaced, and whether the server's own
    machinery raised it (a real conflict, deadlock, cancel or duplicate) rather than `RAISE … USING ERRCODE`."""

    sqlstate: str
    statement: str
    genuine: bool = False


@dataclass
class Injection:
    """What `inject` did: the errors injected so far and the exceptions the learner's code received."""

    plan: list[str | None]
    done: list[Injected] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    matched: int = 0  # statements that matched, injected or not
    _helpers: list[threading.Thread] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@contextmanager
def inject(engine: Any, url: str, schema: str, plan: Sequence[str | None],
           match: Callable[[str], bool] = lambda statement: True,
           application_name: str = "workbook-faults") -> Iterator[Injection]:
    """While the block runs, the k-th statement `engine` (or every engine: the Engine class) sends that `match`es
    fails with the error plan[k] names (None: it runs as it is); statements after the plan run as they are."""
    from sqlalchemy import event

    if unknown := [s for s in plan if s is not None and s not in FAULTS]:
        raise ValueError(f"no injection for {unknown}: choose from {', '.join(FAULTS)}")
    seen = Injection(list(plan))

    def before(conn, cursor, statement, parameters, context, executemany):
        if not match(statement):
            return statement, parameters
        with seen._lock:
            k, seen.matched = seen.matched, seen.matched + 1
        sqlstate = seen.plan[k] if k < len(seen.plan) else None
        if sqlstate is None:
            return statement, parameters
        seen.done.append(Injected(sqlstate, statement))
        helper = Helper(url, schema, application_name)
        replacement = MAKERS[sqlstate](cursor.connection, helper, schema)
        seen._helpers.append(helper.thread)
        return f"{replacement} {MARK.format(sqlstate)}", _no_parameters(parameters)

    def on_error(context) -> None:
        statement = context.statement or ""
        for sqlstate in FAULTS:
            if MARK.format(sqlstate) in statement:
                seen.errors.append(context.sqlalchemy_exception)
                orig = getattr(context.sqlalchemy_exception, "orig", None)
                genuine = getattr(orig, "sqlstate", None) == sqlstate and "checker" not in str(orig)
                injected = next(i for i in reversed(seen.done) if i.sqlstate == sqlstate)
                injected.genuine = genuine

    event.listen(engine, "before_cursor_execute", before, retval=True)
    event.listen(engine, "handle_error", on_error)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "handle_error", on_error)
        for thread in seen._helpers:
            if thread.ident is not None:  # started: it plays a conflicting session
                thread.join(WAIT + 1)


def _no_parameters(parameters: Any) -> Any:
    """Empty parameters of the same shape (one set, or a list of sets for executemany): the replacement has none."""
    if isinstance(parameters, list):
        return [type(parameters[0])() if parameters else {}]
    return type(parameters)() if isinstance(parameters, (dict, tuple)) else parameters


class Helper:
    """Another session that plays the conflicting transaction, on a thread of its own (every wait bounded)."""

    def __init__(self, url: str, schema: str, application_name: str) -> None:
        self.url, self.schema, self.application_name = url, schema, application_name
        self.thread = threading.Thread(target=lambda: None, daemon=True)  # replaced by start() when it plays

    def connect(self, autocommit: bool = True) -> Any:
        from .. import db

        conn = db.connect(self.url, autocommit=autocommit, application_name=self.application_name)
        conn.execute(f"SET lock_timeout = '{int(WAIT * 1000)}ms'")
        return conn

    @staticmethod
    def keys(n: int) -> list[int]:
        """n distinct rows of the fault table, drawn: concurrent injections seldom fight over the same ones."""
        return random.sample(range(1, ROWS + 1), n)

    def start(self, play: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=play, daemon=True, name="workbook-fault-helper")
        self.thread.start()


def _raise(sqlstate: str, message: str) -> str:
    """The SQLSTATE raised by the server from PL/pgSQL, where a real one cannot be made."""
    return (f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = '{message} "
            "(raised by the checker)'; END $$")


def _serialization_failure(learner: Any, helper: Helper, schema: str) -> str:
    """Read a row, let another session update it and commit, then update it: 40001 under REPEATABLE READ."""
    import psycopg

    status = learner.info.transaction_status
    if learner.autocommit or status == psycopg.pq.TransactionStatus.INERROR:
        return _raise("40001", "could not serialize access due to concurrent update")
    with learner.cursor() as cursor:
        if status == psycopg.pq.TransactionStatus.IDLE:  # this statement starts the transaction: make it RR
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        isolation = cursor.execute("SHOW transaction_isolation").fetchone()[0]
        if isolation == "read committed":
            return _raise("40001", "could not serialize access due to concurrent update")
        (key,) = helper.keys(1)
        cursor.execute(f"SELECT n FROM {schema}.{TABLE} WHERE k = {key}")  # the snapshot, if not taken yet
    with helper.connect() as other:
        other.execute(f"UPDATE {schema}.{TABLE} SET n = n + 1 WHERE k = {key}")  # committed after the snapshot
    return f"UPDATE {schema}.{TABLE} SET n = n + 1 WHERE k = {key}"


def _deadlock(learner: Any, helper: Helper, schema: str) -> str:
    """The learner locks row a, then waits for b; the helper, holding b, then asks for a: a cycle that the learner's
    backend finds (it waited first), so the server aborts the learner's transaction with 40P01.

    The helper waits server-side until it sees the learner blocked, then half a deadlock_timeout more, and asks for
    a with a lock_timeout shorter than its own deadlock_timeout: it gives up before it could ever run the deadlock
    check itself, so the learner is never the one left waiting while the helper takes the blame.
    """
    a, b = helper.keys(2)
    other = helper.connect(autocommit=False)
    other.execute(f"SELECT 1 FROM {schema}.{TABLE} WHERE k = {b} FOR UPDATE")
    ms = other.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'").fetchone()[0]
    pid = learner.info.backend_pid

    def play() -> None:
        try:
            other.execute(f"SET LOCAL statement_timeout = '{int(WAIT * 1000)}ms'")
            other.execute(f"SET LOCAL lock_timeout = '{int(ms * 0.9)}ms'")
            other.execute(f"""DO $$ BEGIN
                WHILE NOT pg_backend_pid() = ANY(pg_blocking_pids({pid})) LOOP PERFORM pg_sleep(0.002); END LOOP;
                PERFORM pg_sleep({ms / 2000});
                PERFORM 1 FROM {schema}.{TABLE} WHERE k = {a} FOR UPDATE;
            END $$""")
        except Exception:  # its lock_timeout (the learner's backend was late) or its statement_timeout: the learner's
            pass           # DO raises 40P01 itself
        finally:
            other.rollback()
            other.close()

    helper.start(play)
    return (f"DO $$ BEGIN PERFORM 1 FROM {schema}.{TABLE} WHERE k = {a} FOR UPDATE; "
            f"PERFORM 1 FROM {schema}.{TABLE} WHERE k = {b} FOR UPDATE; "
            "RAISE EXCEPTION USING ERRCODE = '40P01', MESSAGE = 'deadlock detected (raised by the checker)'; END $$")


def _cancelled(learner: Any, helper: Helper, schema: str) -> str:
    """Another session cancels the learner's statement while it runs: 57014."""
    pid = learner.info.backend_pid

    def play() -> None:
        with helper.connect() as observer:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                running = observer.execute("SELECT query LIKE %s FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
                                           "AND datname = current_database() AND usename = current_user",
                                           [f"%{MARK.format('57014')}%", pid]).fetchone()
                if running and running[0]:
                    observer.execute("SELECT pg_cancel_backend(%s)", [pid])
                    return
                threading.Event().wait(0.005)

    helper.start(play)
    return ("DO $$ BEGIN PERFORM pg_sleep(2); RAISE EXCEPTION USING ERRCODE = '57014', "
            "MESSAGE = 'canceling statement (raised by the checker)'; END $$")


def _unique_violation(learner: Any, helper: Helper, schema: str) -> str:
    """Insert the key that is always there: 23505."""
    return f"INSERT INTO {schema}.{TABLE} (k) VALUES (0)"


MAKERS: dict[str, Callable[[Any, Helper, str], str]] = {
    "40001": _serialization_failure, "40P01": _deadlock, "57014": _cancelled, "23505": _unique_violation}


@dataclass
class Sleep:
    """One time.sleep call: its thread, the seconds it asked for, and what `note()` said at that moment."""

    thread: int
    seconds: float
    note: Any = None


@contextmanager
def observed_sleep(*functions: Callable[..., Any], scale: float = 0.0, note: Callable[[], Any] = lambda: None,
                   watched: Callable[[], bool] = lambda: True) -> Iterator[list[Sleep]]:
    """Record every time.sleep call of the threads `watched()` accepts (also `sleep` bound in the globals of
    `functions`: `from time import sleep`); each such call really sleeps `scale` × its seconds, other threads'
    calls sleep as usual. The list grows as the calls come."""
    original = time.sleep
    calls: list[Sleep] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        if not watched() or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
            return original(seconds)  # as time.sleep: inf, NaN, negative or a string raise; nothing is noted
        if scale:
            original(seconds * scale)  # a sleep too long for time.sleep raises here, before it is noted
        with lock:
            calls.append(Sleep(threading.get_ident(), seconds, note()))
        return None

    namespaces = {id(f.__globals__): f.__globals__ for f in functions if hasattr(f, "__globals__")}.values()
    rebound = [(g, name) for g in namespaces for name, value in list(g.items()) if value is original]
    time.sleep = sleep
    for namespace, name in rebound:
        namespace[name] = sleep
    try:
        yield calls
    finally:
        time.sleep = original
        for namespace, name in rebound:
            namespace[name] = original
