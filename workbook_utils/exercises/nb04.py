"""Exercises of notebook 04 (transactions and locking races): fix a lost update, order locks, retry correctly.

Each checker runs the learner's code in scripted races (`workbook_utils.races`) on the scratch schema nb04, under
conditions drawn afresh for each check (`draws`): the stock, the accounts and amounts, which schedules run, how many
attempts a retry loop gets and which errors it meets. Statements are interleaved one by one in every order that can
deadlock (`interleavings`, rings of three transfers included); the order in which a transfer locks its two rows,
or takes its advisory locks, is read from the server even inside one statement (`lock_orders`, `advisory_orders`).
The retry loop meets a statement really cancelled by the server (`faults`, 57014) besides the errors it must retry,
and its time.sleep calls are recorded, not waited for in full (`faults.observed_sleep`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from . import Exercise, Question, WrongKind
from .draws import Draw
from .interleavings import cycle, every_schedule, schedules

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

SELL_STARTER = '''
def sell(session, product_id):
    product = session.get(Product, product_id)
    product.inventory -= 1
    session.flush()
    return product.inventory
'''
TRANSFER_STARTER = [
    "UPDATE accounts SET balance = balance - :amount WHERE id = :from_id",
    "UPDATE accounts SET balance = balance + :amount WHERE id = :to_id",
]
RETRY_STARTER = '''
def run_with_retry(engine, work, attempts=5, backoff=0.05):
    with Session(engine) as session, session.begin():
        return work(session)
'''
RETRY_TIMEOUT = 5.0  # seconds a learner's retry loop may run in one scenario before the check gives up on it
POOL_TIMEOUT = 3.0  # seconds a check's engine waits for a free connection (SQLAlchemy's default: 30)
SLEEP_SCALE = 0.1  # share of each time.sleep the learner's loop asks for that it really sleeps (the call is recorded)
QUEUE = "BLOCKS|ok"  # a step that may wait, or queue behind its session's waiting step
ACCOUNTS = "CREATE TABLE IF NOT EXISTS nb04.accounts (id int PRIMARY KEY, balance int NOT NULL)"
FAR = 720721  # q1's other products: 0, 2, and 1 + lcm(1..16), so a lock keyed on `product_id % m` or `/ 2` meets 1's
TABLES = f"""
    {ACCOUNTS};
    CREATE TABLE IF NOT EXISTS nb04.attempts (n int);
    CREATE TABLE IF NOT EXISTS nb04.products (LIKE public.products INCLUDING ALL);
    INSERT INTO nb04.products SELECT * FROM public.products WHERE id IN (1, 2) ON CONFLICT DO NOTHING;
    INSERT INTO nb04.products SELECT other, sku || '-' || other, name, price, inventory, version
      FROM public.products, unnest(ARRAY[0, {FAR}]) AS other WHERE id = 2 ON CONFLICT DO NOTHING"""
Q1_CLAIMS = ("both sales of product 1 counted (stock − 2)", "every sale succeeded", "sell() returns the new inventory",
             "sell() leaves the commit to its caller", "a sale of another product does not wait for it",
             "no deadlock when both sales read before either writes (statements interleaved)")
Q2_CLAIMS = ("no deadlock between two transfers in opposite directions",
             "no deadlock around a ring of three transfers (a→b, b→c, c→a)", "every transfer committed",
             "the balances are right", "a transfer between two other accounts does not wait",
             "every lock a transfer takes ends with its transaction",
             "a transfer takes its locks in one order, whatever another transfer holds",
             "every transfer takes its locks in the order of the accounts' ids (either way), whoever the two accounts are")
ALL_BITS = 0x7FFFFFFF  # q2 also probes accounts lo and lo ^ ALL_BITS, every bit of their ids apart (`_far_moves`)
RING_SAMPLE = 6  # schedules of the ring of three drawn beyond the ones every check runs
T = TypeVar("T")


class _Runaway(BaseException):
    """Raised by the check's work function when a retry loop keeps going far past any sane bound."""


def _ready(engine: Engine) -> Engine:
    """The check's tables, (re)created if missing: a later setup("04") drops the scratch schema nb04."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text(TABLES))
    return engine


def _engine(wb: Workbook, application_name: str | None = None) -> Engine:
    """An engine on nb04 whose every session is bounded, even one a learner's runaway loop leaves behind; a pool
    that is empty fails in POOL_TIMEOUT s, not 30."""
    from sqlalchemy import event

    connect_args = {"options": "-c search_path=nb04 -c lock_timeout=5s -c statement_timeout=10s "
                               "-c idle_in_transaction_session_timeout=30s"}
    engine = wb.make_engine(connect_args=connect_args | ({"application_name": application_name} if application_name
                                                         else {}), pool_timeout=POOL_TIMEOUT)
    event.listen(engine, "checkin", _unlock_all)
    return _ready(engine)


_CHECKS = itertools.count(1)


@contextmanager
def _own_engine(wb: Workbook) -> Iterator[Engine]:
    """A fresh engine for one check, disposed afterwards, and every session it opened ended (one an answer left
    checked out too): nothing an answer leaks (sessions never closed, their locks) reaches a later check."""
    from .. import db
    from ..workbook import CLOSE_SQL

    name = f"{wb.app_name}-check{next(_CHECKS)}"
    engine = _engine(wb, name)
    try:
        yield engine
    finally:
        engine.dispose()
        with contextlib.suppress(ValueError):
            wb.engines.remove(engine)
        with db.connect(wb.url) as conn:
            conn.execute(CLOSE_SQL, [name])


def _checked(wb: Workbook, verdict: Callable[[Engine], T]) -> T:
    """verdict(engine) on a check's own engine (`_own_engine`)."""
    with _own_engine(wb) as engine:
        return verdict(engine)


def _unlock_all(dbapi_connection: Any, _record: Any) -> None:
    """A connection back in the check's pool keeps no session-level advisory lock (`pg_advisory_lock` is never
    released by COMMIT: an answer that takes one must not break the checks after it)."""
    if dbapi_connection is not None:
        with contextlib.suppress(Exception):  # a broken connection: the pool discards it anyway
            dbapi_connection.execute("SELECT pg_advisory_unlock_all()")
            dbapi_connection.rollback()


def _scalar(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> Any:
    from sqlalchemy import text

    with engine.begin() as conn:
        result = conn.execute(text(sql), params or {})
        return result.scalar() if result.returns_rows else None


def _lock_timeout(engine: Engine) -> str:
    """A lock_timeout that lets the deadlock detector speak first (three deadlock_timeouts, at least 2 s)."""
    deadlock_ms = int(_scalar(engine, "SELECT setting FROM pg_settings WHERE name = 'deadlock_timeout'"))
    return f"{max(3 * deadlock_ms, 2000)}ms"


# q1 ------------------------------------------------------------------------------------------------------------

def _sent(engine: Engine, sell: Callable[[Any, int], int]) -> list[tuple[str, Any]]:
    """The statements sell(session, 1) sends, with their parameters, as the driver gets them (rolled back)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    sent: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent.append((statement, parameters))

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", before)
        try:
            with Session(bind=conn) as session:
                sell(session, 1)
                session.rollback()
        finally:
            event.remove(conn, "before_cursor_execute", before)
    return sent


def _replay(statement: str, parameters: Any) -> Callable[[Any], Any]:
    """A race step that sends one recorded statement again, as it was sent."""
    def step(session: Any) -> Any:
        return session.connection().exec_driver_sql(statement, parameters).rowcount

    step.__doc__ = " ".join(statement.split())
    return step


def sell_verdict(engine: Engine, sell: Callable[[Any, int], int], draw: Draw) -> dict[str, bool]:
    """Two sales of product 1 race (s2 sells while s1 is uncommitted); s3 peeks and sells product 2 meanwhile.
    Then the statements one sale sends run for two sales, interleaved in every order (both reads first included).

    The stock is drawn, so no hard-coded inventory can pass.
    """
    from .. import races

    start = draw.integer("stock", 20, 90)
    _scalar(engine, f"UPDATE products SET inventory = :n, version = 1 WHERE id IN (0, 1, 2, {FAR})", {"n": start})

    def s1_sale(s: Any) -> int:
        """sell(session, 1)"""
        return sell(s, 1)

    def other_sale(s: Any) -> int:
        """sell(session, 0); sell(session, 2); sell(session, 720721)"""
        return sell(s, 0), sell(s, 2), sell(s, FAR)

    race = races.run(engine, [("s1", s1_sale), ("s3", "SELECT inventory FROM products WHERE id = 1"),
                              ("s3", other_sale, QUEUE), ("s2", s1_sale, QUEUE), ("s1", "COMMIT", QUEUE),
                              ("s2", "COMMIT", QUEUE), ("s3", "COMMIT", QUEUE)], quick_recheck=True)
    verdict = {Q1_CLAIMS[0]: _scalar(engine, "SELECT inventory FROM products "
                                                                              "WHERE id = 1") == start - 2,
               Q1_CLAIMS[1]: set(race.steps.outcome) == {"ok"},
               Q1_CLAIMS[2]: {race.value(1), race.value(4)} == {start - 1, start - 2},
               Q1_CLAIMS[3]: race.value(2) == start,
               Q1_CLAIMS[4]: not race.steps.loc[3, "waited for"]}
    sent = _sent(engine, sell)
    lock_timeout = _lock_timeout(engine)
    interleaved = True
    for steps in schedules({"s1": sent, "s2": sent}, draw, limit=18):  # all of them, up to 3 statements a sale
        _scalar(engine, "UPDATE products SET inventory = :n, version = 1 WHERE id IN (1, 2)", {"n": start})
        replay = races.run(engine, [(s, _replay(*sql), QUEUE) for s, sql in steps]
                           + [("s1", "COMMIT", QUEUE), ("s2", "COMMIT", QUEUE)], lock_timeout=lock_timeout, quick_recheck=True)
        if "40P01" in set(replay.steps.outcome):
            interleaved = False
            break
    verdict[Q1_CLAIMS[5]] = interleaved
    return verdict


# q2 ------------------------------------------------------------------------------------------------------------

def _non_orders() -> list[Callable[[int, int], bool]]:
    """Rules that pick a pair's first row by the pair (True: the lower id first) and are one order for no set of
    ids that holds every residue: by the sum or the difference of the ids mod 2, 3 or 4 (the parity of the sum,
    rock-paper-scissors …), by a bit of the ids' xor (`(:from_id # :to_id) & 4`), or the lower first only when the
    ids are more than 1 or 2 apart. Each works on ints and on numpy arrays of them."""
    rules: list[Callable[[int, int], bool]] = []
    for m in (2, 3, 4):
        rules += [lambda lo, hi, m=m, r=r: (lo + hi) % m == r for r in range(m)]
        rules += [lambda lo, hi, m=m, r=r: (hi - lo) % m == r for r in range(m)]
    rules += [lambda lo, hi, b=b: (lo ^ hi) & b == 0 for b in (2, 4, 8)]
    return rules + [lambda lo, hi, t=t: hi - lo > t for t in (1, 2)]


SPAN = 24  # the accounts' ids lie within 24 of each other: a bit of 8 in their xor alternates in any 24 in a row


@cache
def _five_offsets() -> tuple[list[tuple[int, ...]], Any, Any]:
    """Every five offsets 0 = a < b < c < d < e < SPAN; each one's ten triples as rows of every triple of offsets."""
    from itertools import combinations

    import numpy as np

    triples = list(combinations(range(SPAN), 3))
    row = {t: i for i, t in enumerate(triples)}
    fives = [(0, *rest) for rest in combinations(range(1, SPAN), 4)]
    return fives, np.array(triples), np.array([[row[t] for t in combinations(f, 3)] for f in fives])


def _account_ids(rng: Any) -> list[int]:
    """Five ids within SPAN of a drawn base, such that each of `_non_orders` puts some three of them in a cycle: an
    order that depends on the pair deadlocks on every check, not only when the ids happen to show it. Drawn among
    every such five (numpy checks the 8,855 at once), so a draw never fails."""
    import numpy as np

    base = rng.randint(1, 100 - SPAN)
    fives, triples, rows = _five_offsets()
    x, y, z = (base + triples[:, k] for k in range(3))
    cyclic = [(rule(x, y) == rule(y, z)) & (rule(y, z) != rule(x, z)) for rule in _non_orders()]   # x < y < z: a cycle?
    good = np.flatnonzero(np.logical_and.reduce([c[rows].any(axis=1) for c in cyclic]))   # per five: every rule
    ids = [base + offset for offset in fives[good[rng.randrange(len(good))]]]
    rng.shuffle(ids)
    return ids


def accounts(draw: Draw) -> tuple[list[int], list[int], list[int]]:
    """The drawn accounts (a ring of three, then a pair of others), their opening balances, and four amounts."""
    ids = draw.pick("accounts", _account_ids)
    balances = draw.pick("balances", lambda rng: [rng.randint(100, 999) for _ in range(5)])
    amounts = draw.pick("amounts", lambda rng: [rng.randint(1, 99) for _ in range(4)])
    return ids, balances, amounts


def _transfer_steps(statements: Sequence[str], from_id: int, to_id: int, amount: int) -> list[Callable[[Any], Any]]:
    """One transfer's statements as race steps, each with its bind parameters."""
    from sqlalchemy import text

    params = {"from_id": from_id, "to_id": to_id, "amount": amount}

    def step_of(sql: str) -> Callable[[Any], Any]:
        def step(session: Any) -> Any:
            return session.execute(text(sql), params).rowcount

        step.__doc__ = f"{from_id}→{to_id}: " + " ".join(sql.split())
        return step

    return [step_of(sql) for sql in statements]


def _statements(answer: Any) -> list[str]:
    """The learner's statements: a list of single SQL statements, or WrongKind."""
    if callable(answer):
        raise WrongKind("pass the list of statements itself (SQL strings with :from_id, :to_id and :amount), "
                        "not a function")
    if not isinstance(answer, (list, tuple)) or not answer:
        raise WrongKind("the answer should be a list of SQL strings, one statement per item")
    from pglast import split

    answer = [_sql_text(q) for q in answer]
    # PostgreSQL's own scanner counts the statements: a `;` in a comment or a string splits nothing
    if any(len(split(q, with_parser=False)) > 1 for q in answer):
        raise WrongKind("one statement per item, please: an item contains `;` (two statements in one string "
                        "would run as one step, so the check could not interleave them)")
    return list(answer)


def _sql_text(statement: Any) -> str:
    """A statement as SQL text with :name parameters: a string as it is; text() or a Core statement (select(),
    update() with bindparam("from_id") …) compiled for PostgreSQL."""
    from sqlalchemy.dialects.postgresql.base import PGDialect
    from sqlalchemy.sql import ClauseElement

    if isinstance(statement, str):
        return statement
    if isinstance(statement, ClauseElement):  # PostgreSQL's SQL without a driver's casts (`:amount::INTEGER`)
        return str(statement.compile(dialect=PGDialect(paramstyle="named")))
    raise WrongKind("the answer should be a list of SQL strings (or text() / Core statements), one statement per item")


def _pair_schedules(scripts: dict[str, list[Any]]) -> list[list[tuple[str, Any]]]:
    """Every schedule of two transfers (32 at most: evenly spaced ones if there are more, the first included)."""
    every = list(every_schedule(scripts))
    return every[::-(-len(every) // 32)]


def _held_schedules(scripts: dict[str, list[Any]]) -> list[list[tuple[str, Any]]]:
    """Each session holding its first k statements, for every k, in the scripts' order (where locks taken in
    opposite or circular orders meet)."""
    from .interleavings import interleave

    names = list(scripts)
    length = min(len(s) for s in scripts.values())
    return [interleave(scripts, dict.fromkeys(names, k), names) for k in range(1, length + 1)]


def _ring_schedules(scripts: dict[str, list[Any]], draw: Draw) -> list[list[tuple[str, Any]]]:
    """Each session holding its first k statements, for every k, in ring order; then a drawn sample of the rest."""
    chosen = _held_schedules(scripts) + schedules(scripts, draw, limit=RING_SAMPLE + 1)
    seen, unique = set(), []
    for steps in chosen:
        key = tuple((s, id(step)) for s, step in steps)
        if key not in seen:
            seen.add(key)
            unique.append(steps)
    return unique


def _open_accounts(engine: Engine, ids: list[int], balances: list[int]) -> None:
    """The accounts table holds exactly these accounts, with these balances."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE accounts"))
        conn.execute(text("INSERT INTO accounts SELECT * FROM unnest(CAST(:ids AS int[]), CAST(:balances AS int[]))"),
                     {"ids": ids, "balances": balances})


def _run_transfer(conn: Any, statements: Sequence[str], params: dict[str, int], errors: list[Exception]) -> None:
    """The transfer's statements on `conn` (the probe's thread); an error ends them and is kept."""
    from sqlalchemy import text

    try:
        for sql in statements:
            conn.execute(text(sql), params)
    except Exception as error:  # noqa: BLE001 - any failure ends the probe; the other claims judge failures
        errors.append(error)


def _params(move: tuple[int, int, int]) -> dict[str, int]:
    from_id, to_id, amount = move
    return {"from_id": from_id, "to_id": to_id, "amount": amount}


def _while_blocked(engine: Engine, statements: Sequence[str], move: tuple[int, int, int],
                   hold: Callable[[Any], Any], look: Callable[[Any, int], T]) -> T | None:
    """Run a transfer while another session holds what `hold(conn)` locks; once the transfer waits
    (pg_blocking_pids), `look(observer, pid)` reads the server; then both are rolled back. None: it never waited."""
    from .. import locks

    with engine.connect() as holder, engine.connect() as mover, engine.connect() as observer:
        hold(holder)
        errors: list[Exception] = []
        thread = threading.Thread(target=_run_transfer, daemon=True, name="nb04-lock-order",
                                  args=(mover, statements, _params(move), errors))
        thread.start()
        pid, raw = mover.connection.driver_connection.info.backend_pid, observer.connection.driver_connection
        deadline = time.monotonic() + 15.0  # a transfer that touches the held lock waits: a net, not a wait
        while thread.is_alive() and not locks.blockers(raw, [pid]).get(pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        seen = look(observer, pid) if thread.is_alive() else None
        holder.rollback()
        thread.join(10)
        mover.rollback()
    return seen


def _taken(observer: Any, row_id: int) -> bool:
    """True if another transaction holds a lock on account `row_id` (a table lock queued ahead: False, no evidence)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    try:  # SKIP LOCKED never waits for a row; a lock on the whole table it would wait for, so that wait is bounded
        observer.execute(text("SET LOCAL lock_timeout = '200ms'"))
        return observer.execute(text("SELECT id FROM accounts WHERE id = :id FOR UPDATE SKIP LOCKED"),
                                {"id": row_id}).first() is None
    except OperationalError:
        return False
    finally:
        observer.rollback()


BOTH = 0  # `_locked_first` of a transfer that locked each of its rows first while the other one was held


def _locked_first(engine: Engine, statements: Sequence[str], move: tuple[int, int, int], ids: list[int],
                  balances: list[int]) -> int | None:
    """Which of its two rows a transfer locks first, as the server shows it: another session holds one row (each in
    turn); once the transfer waits for it (pg_blocking_pids), the observer finds the other row taken (FOR UPDATE SKIP
    LOCKED returns nothing) or free. Whole statements cannot hide their order. None: it never waited holding its other
    row; BOTH: it did each time (its order depends on what is held, as `SKIP LOCKED` makes it)."""
    from sqlalchemy import text

    from .. import locks

    from_id, to_id, _ = move
    balance = dict(zip(ids, balances, strict=True))
    order = [to_id, from_id, *(i for i in ids if i not in (from_id, to_id))]  # stored order: to_id's row first
    _open_accounts(engine, order, [balance[i] for i in order])  # the transfer is rolled back: once is enough
    lock = text("SELECT id FROM accounts WHERE id = :id FOR UPDATE")

    def look(other: int) -> Callable[[Any, int], tuple[bool, bool]]:
        def seen(observer: Any, pid: int) -> tuple[bool, bool]:
            waits = locks.locks_held(observer.connection.driver_connection, pid).query("not granted")
            on_a_row = len(waits) > 0 and "relation" not in set(waits.locktype)
            return on_a_row, on_a_row and _taken(observer, other)  # waiting for the table: no row order

        return seen

    seen = []
    for held, other in sorted(((to_id, from_id), (from_id, to_id)), reverse=True):  # the higher id held first
        on_a_row, taken = _while_blocked(engine, statements, move, lambda conn, held=held: conn.execute(
            lock, {"id": held}), look(other)) or (False, False)
        if not on_a_row:
            break
        seen.append(taken)
    if seen == [True, True]:  # each row first while the other was held (SKIP LOCKED): no order, so both
        return BOTH
    return min(from_id, to_id) if seen[:1] == [True] else max(from_id, to_id) if seen == [False, True] else None


def _probe_orders(moves: Callable[[tuple[int, int]], Any], ids: list[int], until_problem: bool,
                  problem: Callable[[dict[tuple[int, int], Any]], str | None]) -> dict[tuple[int, int], Any]:
    """moves(x, y) for every transfer between two of `ids`, in both directions, one direction of every pair first;
    until_problem: stop as soon as `problem` of what was seen so far says "pair" or "ring"."""
    seen: dict[tuple[int, int], Any] = {}
    pairs = [(x, y) for i, x in enumerate(ids) for y in ids[i + 1:]]
    for x, y in pairs + [(y, x) for x, y in pairs]:
        seen[x, y] = moves((x, y))
        if until_problem and problem(seen):
            break
    return seen


Amount = int | dict[tuple[int, int], int]  # one amount for every transfer, or one per (from, to)


def _amount(amount: Amount, xy: tuple[int, int]) -> int:
    """The amount transfer xy moves."""
    return amount if isinstance(amount, int) else amount[xy]


def lock_orders(engine: Engine, statements: Sequence[str], ids: list[int], balances: list[int],
                amount: Amount, until_problem: bool = False) -> dict[tuple[int, int], int | None]:
    """For every transfer between two of `ids`, in both directions: the row it locks first (`_locked_first`).
    until_problem: stop at the first pair or ring (`order_problem`), probing one direction of every pair first."""
    return _probe_orders(lambda xy: _locked_first(engine, statements, (*xy, _amount(amount, xy)), ids, balances), ids,
                         until_problem, order_problem)


ADVISORY_SQL = """
    SELECT classid::bigint, objid::bigint, objsubid, mode FROM pg_locks WHERE pid = :pid AND locktype = 'advisory'
    AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY classid, objid, objsubid"""
Key = tuple[int, int, int]  # an advisory lock as pg_locks shows it: classid, objid, objsubid (1: one bigint, 2: two ints)


def _advisory_keys(conn: Any, pid: int, exclusive: bool = False) -> list[Key]:
    """The advisory locks session `pid` holds in this database (exclusive: only those taken in ExclusiveLock mode)."""
    from sqlalchemy import text

    rows = conn.execute(text(ADVISORY_SQL), {"pid": pid}).all()
    return [(c, o, s) for c, o, s, mode in rows if mode == "ExclusiveLock" or not exclusive]


def _signed(n: int, bits: int) -> int:
    """An unsigned oid of pg_locks read back as the signed integer the key was given as."""
    return n - (1 << bits) if n >= 1 << (bits - 1) else n


def _hold_key(conn: Any, key: Key) -> None:
    """Take the advisory lock `key` (as pg_locks showed it) on `conn`, until its transaction ends."""
    from sqlalchemy import text

    classid, objid, sub = key
    if sub == 1:
        conn.execute(text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint))"), {"k": _signed(classid << 32 | objid, 64)})
    else:
        conn.execute(text("SELECT pg_advisory_xact_lock(CAST(:a AS int), CAST(:b AS int))"),
                     {"a": _signed(classid, 32), "b": _signed(objid, 32)})


def _keys_alone(engine: Engine, statements: Sequence[str], move: tuple[int, int, int], exclusive: bool = False) -> list[Key]:
    """The advisory locks a transfer holds at its end, run alone and rolled back ([] if it fails alone)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        try:
            for sql in statements:
                conn.execute(text(sql), _params(move))
            return _advisory_keys(conn, conn.connection.driver_connection.info.backend_pid, exclusive)
        except Exception:  # noqa: BLE001 - a transfer that fails alone: the other claims report it
            return []
        finally:
            conn.rollback()


def _advisory_order(engine: Engine, statements: Sequence[str], move: tuple[int, int, int]) -> list[tuple[Key, Key]]:
    """(taken first, taken later) for the advisory locks of one transfer, as the server shows it: another session
    holds one of its keys; once the transfer waits for it, the keys it already holds (pg_locks) came first and the
    rest come later. One held key orders two keys, even inside one statement; n keys take n - 1 holds."""
    keys, before = _keys_alone(engine, statements, move), []
    for held in keys[:-1]:
        granted = _while_blocked(engine, statements, move, lambda conn, held=held: _hold_key(conn, held),
                                 lambda observer, pid: _advisory_keys(observer, pid))
        if granted is not None:
            before += [(key, held) for key in granted if key != held]
            before += [(held, key) for key in keys if key not in granted and key != held]
    return before


def advisory_orders(engine: Engine, statements: Sequence[str], ids: list[int], amount: Amount,
                    until_problem: bool = False) -> dict[tuple[int, int], list[tuple[Key, Key]]]:
    """For every transfer between two of `ids`, in both directions: which of its advisory locks it takes before
    which (`_advisory_order`); until_problem: stop at the first pair or ring (`edge_problem`)."""
    return _probe_orders(lambda xy: _advisory_order(engine, statements, (*xy, _amount(amount, xy))), ids,
                         until_problem, edge_problem)


def ungated_problem(firsts: dict[tuple[int, int], int | None], keys: dict[tuple[int, int], list[Key]]) -> str | None:
    """`order_problem` of the rows each transfer locks first, counting only the cycles whose transfers share no
    exclusive advisory lock (`keys` of each transfer): two transfers that take one such lock first never hold rows
    at once, so they cannot both be in a deadlock (the sorted keys of both accounts, or only the lower one's, gate
    every cycle; a key per pair of accounts gates none)."""
    from itertools import combinations, permutations, product

    realized: dict[tuple[int, int], list[tuple[int, int]]] = {}  # row u before row v: the transfers that do so
    for (x, y), first in firsts.items():
        for row in (x, y) if first == BOTH else () if first is None else (first,):
            realized.setdefault((row, y if row == x else x), []).append((x, y))
    nodes = sorted({n for edge in realized for n in edge})
    for size in range(2, len(nodes) + 1):
        for ring in permutations(nodes, size):
            edges = [(ring[i], ring[(i + 1) % size]) for i in range(size)]
            if ring[0] != min(ring) or not all(edge in realized for edge in edges):
                continue
            for moves in product(*(realized[edge] for edge in edges)):
                if not any(set(keys.get(m, ())) & set(keys.get(n, ())) for m, n in combinations(moves, 2)):
                    return "pair" if size == 2 else "ring"
    return None


def takes_advisory_locks(engine: Engine, statements: Sequence[str], ids: list[int], balances: list[int],
                         amount: int) -> bool:
    """True if a transfer (alone, rolled back) holds exclusive advisory locks at its end: then those come first, and
    their order (`advisory_orders`), not its rows', decides whether transfers can deadlock each other."""
    _open_accounts(engine, ids, balances)
    return bool(_keys_alone(engine, statements, (ids[1], ids[0], amount), exclusive=True))


def edge_problem(before: dict[tuple[int, int], list[tuple[Any, Any]]]) -> str | None:
    """"pair" if two transfers between the same accounts take two locks in opposite orders, "ring" if the orders
    of all transfers form a cycle (a→b, b→c, c→a: not one global order), else None. `before` maps each transfer
    (from, to) to its (lock taken first, lock taken later) pairs."""
    from graphlib import CycleError, TopologicalSorter

    graph: dict[Any, set[Any]] = {}
    for (x, y), edges in before.items():
        if any((later, first) in before.get((y, x), ()) for first, later in edges):
            return "pair"
        for first, later in edges:
            graph.setdefault(later, set()).add(first)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError:
        return "ring"
    return None


def order_problem(firsts: dict[tuple[int, int], int | None]) -> str | None:
    """`edge_problem` of the rows each transfer locks first (None: no order seen); "held" if a transfer locked each
    row first while the other was held (BOTH)."""
    if BOTH in firsts.values():
        return "held"
    return edge_problem({(x, y): [] if first is None else [(first, y if first == x else x)]
                         for (x, y), first in firsts.items()})


def column_problem(firsts: dict[tuple[int, int], int | None]) -> str | None:
    """"column" if the accounts each transfer locks first follow neither id order (ascending or descending): an
    order that depends on the pair (`abs(:from_id - :to_id) > 5`, a bit of their xor …) can show no ring on five
    accounts, yet rings on others. None if they do, or if some transfer showed no order."""
    if None in firsts.values():
        return None
    for pick in (min, max):
        if all(first == pick(x, y) for (x, y), first in firsts.items()):
            return None
    return "column"


def key_order_problem(orders: dict[tuple[int, int], list[tuple[Key, Key]]]) -> str | None:
    """`column_problem` of advisory locks: each account's key is the one every transfer of it takes (a hash of its
    id will do); None where no key is an account's (a key per pair, one key for all: their order is not the ids')."""
    involved: dict[int, list[set[Key]]] = {}
    for (x, y), edges in orders.items():
        for account in (x, y):
            involved.setdefault(account, []).append({key for edge in edges for key in edge})
    own = {account: set.intersection(*sets) for account, sets in involved.items()}
    if any(len(keys) != 1 for keys in own.values()) or len({k for keys in own.values() for k in keys}) < len(own):
        return None
    account_of = {key: account for account, (key,) in ((a, tuple(k)) for a, k in own.items())}
    return column_problem({move: account_of[edges[0][0]] if edges else None for move, edges in orders.items()})


def _far_moves(ids: list[int]) -> list[tuple[int, int, int]]:
    """Transfers with a huge amount around a ring of seven accounts: the lowest drawn one, then ids far from it and
    from each other, each next to one across a boundary an order by digits, text or low bits trips on: every bit of
    the id apart (lo ^ ALL_BITS), 2**24 - 1, 2**24 and 2**25 - 1 (masks of low bits: rows `ORDER BY id & 255`; keys
    `id & 255` taken in the ids' order meet in opposite orders), 10**6 and 10**6 - 1 (text, `id % 100`). Around a
    ring, each account meets two others, so its own advisory key shows (`key_order_problem`)."""
    ring = [min(ids), min(ids) ^ ALL_BITS, 2**25 - 1, 2**24, 2**24 - 1, 10**6, 10**6 - 1]
    return [(x, y, 10**8) for x, y in zip(ring, ring[1:] + ring[:1], strict=True)]


def _order_problem(engine: Engine, statements: Sequence[str], ids: list[int], balances: list[int],
                   amount: dict[tuple[int, int], int]) -> str | None:
    """"pair", "ring", "held", "column" or None: the order each transfer (its own drawn amount: an order may depend
    on it) takes its locks in, read on the server (a ring of any three ids is enough, and cheap): its exclusive
    advisory locks if it takes some, then its rows where they gate none."""
    if not takes_advisory_locks(engine, statements, ids, balances, amount[ids[1], ids[0]]):
        firsts = lock_orders(engine, statements, ids, balances, amount, until_problem=True)
        if problem := order_problem(firsts) or column_problem(firsts):
            return problem
        if None in firsts.values():
            return None
        far_ids = [x for x, _, _ in _far_moves(ids)]   # and far apart, across boundaries: the same order?
        for x, y, far_amount in _far_moves(ids):
            firsts[x, y] = _locked_first(engine, statements, (x, y, far_amount), far_ids, [500] * len(far_ids))
            if problem := column_problem(firsts):
                return problem
        return None
    orders = advisory_orders(engine, statements, ids, amount, until_problem=True)
    if problem := edge_problem(orders) or key_order_problem(orders):
        return problem
    far_ids = [x for x, _, _ in _far_moves(ids)]
    _open_accounts(engine, far_ids, [500] * len(far_ids))
    orders |= {(x, y): _advisory_order(engine, statements, (x, y, far_amount)) for x, y, far_amount in _far_moves(ids)}
    _open_accounts(engine, ids, balances)   # the drawn accounts again, for the rows' probe below
    if problem := edge_problem(orders) or key_order_problem(orders):   # the keys' order far apart too
        return problem
    keys = {(x, y): _keys_alone(engine, statements, (x, y, amount[x, y]), exclusive=True)
            for x in ids for y in ids if x != y}
    return ungated_problem(_probe_orders(
        lambda xy: _locked_first(engine, statements, (*xy, amount[xy]), ids, balances), ids, True,
        lambda firsts: ungated_problem(firsts, keys)), keys)


def _locks_outlive(engine: Engine, statements: Sequence[str], move: tuple[int, int, int]) -> bool:
    """True if a transfer run alone (then rolled back) leaves its session holding advisory locks: session-level ones
    (`pg_advisory_lock`), which neither COMMIT nor ROLLBACK releases."""
    from sqlalchemy import text

    with engine.connect() as conn:
        try:
            for sql in statements:
                conn.execute(text(sql), _params(move))
        except Exception:  # noqa: BLE001 - a transfer that fails alone: the other claims report it
            return False
        finally:
            conn.rollback()
        return bool(_advisory_keys(conn, conn.connection.driver_connection.info.backend_pid))


def _bystander_waits(engine: Engine, statements: Sequence[str], ids: list[int], balances: list[int],
                     moves: list[tuple[int, int, int]], lock_timeout: str) -> bool:
    """True if the second transfer (two other accounts) waited while the first one was open."""
    from .. import races

    (a, b, first), (d, e, second) = moves
    _open_accounts(engine, ids, balances)
    race = races.run(engine, [*(("s1", step, QUEUE) for step in _transfer_steps(statements, a, b, first)),
                              *(("s3", step, QUEUE) for step in _transfer_steps(statements, d, e, second)),
                              ("s3", "COMMIT", QUEUE), ("s1", "COMMIT", QUEUE)],
                     lock_timeout=lock_timeout, quick_recheck=True)
    return bool(race.steps.query("session == 's3'")["waited for"].any())


def transfer_verdict(engine: Engine, answer: Any, draw: Draw) -> dict[str, bool]:
    """First the order in which each transfer between two of the drawn accounts takes its locks, in both directions,
    seen on the server: its rows, or its exclusive advisory locks if it takes some (then its rows only where no such
    lock gates them, `ungated_problem`).
    One global order: no pair, no ring of any three against it (either ends the check there), and a column's. Then a transfer d→e
    while a→b is open; transfers a→b and b→a in every interleaving of their statements; a ring a→b, b→c, c→a (each
    holding its first k statements, for every k, and drawn schedules). Accounts (drawn so that any
    order that depends on the pair shows a ring, `_account_ids`), balances and amounts are drawn."""
    from sqlalchemy import text

    from .. import races

    statements = _statements(answer)
    ids, balances, amounts = accounts(draw)
    a, b, c, d, e = ids
    lock_timeout = _lock_timeout(engine)
    verdict = dict.fromkeys(Q2_CLAIMS, True)

    def run(moves: list[tuple[int, int, int]], steps_of: Callable[[dict[str, list[Any]]], list[list[tuple]]],
            deadlock_key: str) -> bool:
        """Every chosen schedule of these transfers; False at the first that breaks a claim (its key set False)."""
        scripts = {f"s{i}": _transfer_steps(statements, *move) for i, move in enumerate(moves, 1)}
        expected = dict(zip(ids, balances, strict=True))
        for from_id, to_id, amount in moves:
            expected[from_id] -= amount
            expected[to_id] += amount
        for steps in steps_of(scripts):
            _open_accounts(engine, ids, balances)
            race = races.run(engine, [(s, step, QUEUE) for s, step in steps]
                             + [(s, "COMMIT", QUEUE) for s in scripts], lock_timeout=lock_timeout, quick_recheck=True)
            with engine.connect() as conn:
                found = dict(conn.execute(text("SELECT id, balance FROM accounts")).all())
            outcomes = set(race.steps.outcome)
            verdict[deadlock_key] = "40P01" not in outcomes
            verdict["every transfer committed"] = outcomes == {"ok"}
            verdict["the balances are right"] = found == expected
            if not all(verdict.values()):
                return False  # the first schedule that fails is enough (and a deadlock costs deadlock_timeout)
        return True

    pair = [(a, b, amounts[0]), (b, a, amounts[1])]
    ring = [(x, y, amount) for (x, y), amount in zip(cycle([a, b, c], 3), amounts, strict=False)]
    _open_accounts(engine, ids, balances)
    if _locks_outlive(engine, statements, (a, b, amounts[0])):  # pg_advisory_lock: the rest would wait on it
        return {**verdict, "every lock a transfer takes ends with its transaction": False}
    probed = draw.pick("the probe's amounts", lambda rng: {(x, y): int(10 ** rng.uniform(0, 7)) for x in ids for y in ids
                                                           if x != y}, show=lambda _: "one per transfer, 1 to 10**7")
    problem = _order_problem(engine, statements, ids, balances, probed)
    verdict["no deadlock around a ring of three transfers (a→b, b→c, c→a)"] = problem != "ring"
    verdict["a transfer takes its locks in one order, whatever another transfer holds"] = problem != "held"
    if problem == "column":   # right on these five accounts, but not on others: no race here can show it
        return {**verdict, Q2_CLAIMS[-1]: False}
    if problem != "ring":  # the bystander first (one race): a lock on more than two rows (LOCK TABLE …) fails at once
        verdict["a transfer between two other accounts does not wait"] = not _bystander_waits(
            engine, statements, ids, balances, [(a, b, amounts[0]), (d, e, amounts[3])], lock_timeout)
    # a pair the probe found: the schedules where both hold their first k statements say how it fails (a deadlock,
    # or a lock_timeout's 55P03); the probe's verdict stands if none fails
    if problem != "ring" and verdict["a transfer between two other accounts does not wait"] \
            and run(pair, _held_schedules if problem else _pair_schedules,
                    "no deadlock between two transfers in opposite directions"):
        verdict["no deadlock between two transfers in opposite directions"] = problem != "pair"
    if problem is None and all(verdict.values()):
        run(ring, lambda scripts: _ring_schedules(scripts, draw),
            "no deadlock around a ring of three transfers (a→b, b→c, c→a)")
    return verdict


class StatementsExercise(Exercise):
    """An exercise whose answer is a list of statements: the starter's list handed back is not attempted."""

    def verdict(self, answer: Any, seed: int | None = None) -> tuple[str, str | None]:
        from . import NOT_ATTEMPTED

        if isinstance(answer, (list, tuple)) and [" ".join(str(q).split()) for q in answer] == \
                [" ".join(q.split()) for q in TRANSFER_STARTER]:
            return NOT_ATTEMPTED, None
        return super().verdict(answer, seed)


# q3 ------------------------------------------------------------------------------------------------------------

RETRYABLE = ("40001", "40P01", "55P03")
# Of the same classes, yet not worth another try: a loop that retries by class prefix ("40…", "55…") retries these.
SAME_CLASS = ("40002", "40003", "55000", "55006")  # integrity violation at commit, completion unknown, not in state, in use
LEAK_CLAIM = "every session the loop opens is closed"
WAIT_CLAIM = "no session (nor the locks of its failed transaction) is held while the loop waits to retry"
LAST_CLAIM = "no wait after the last attempt"
SAME_CLASS_CLAIM = "raises other class 40 and 55 errors (40002, 40003, 55000, 55006) at once, as they are"


class _Work:
    """A unit of work that logs each attempt (its transaction id, when it started), then fails with the next
    SQLSTATE of `sqlstates` (None: succeeds); the error it raised last is kept, to compare with what came out."""

    def __init__(self, sqlstates: Sequence[str | None], stopped: threading.Event) -> None:
        self.sqlstates, self.stopped = list(sqlstates), stopped
        self.xids: list[str] = []
        self.started: list[float] = []
        self.last_error: BaseException | None = None
        self.sleeps: list[Any] = []  # the loop's time.sleep calls (faults.Sleep), each noted with the attempts so far
        self.open_while_sleeping: list[int] = []  # at each of those calls, the sessions (connections) the loop had open

    def __call__(self, session: Any) -> str:
        from sqlalchemy import text

        if self.stopped.is_set():  # the check gave up on this loop: park its thread here for good, holding nothing
            while True:  # not self.stopped.wait(): it is set, so that returns at once and a swallowing loop spins
                time.sleep(3600)
        if len(self.started) >= 50:
            raise _Runaway("more than 50 attempts")
        self.started.append(time.monotonic())
        n = len(self.started)
        try:
            self.xids.append(session.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())
            session.execute(text("INSERT INTO attempts VALUES (:n)"), {"n": n})
            state = self.sqlstates[min(n, len(self.sqlstates)) - 1]
            if state == "22012":
                session.execute(text("SELECT 1 / 0"))
            elif state:
                session.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{state}'; END $$"))
        except Exception as error:
            self.last_error = error
            raise
        return "done"


def _in_thread(call: Callable[[], Any], stopped: threading.Event,
               watch: Callable[[threading.Thread], AbstractContextManager[Any]] = lambda thread: nullcontext()
               ) -> tuple[str, Any]:
    """Run a learner's loop on a daemon thread, at most RETRY_TIMEOUT s, inside `watch(thread)`: ("returned", value),
    ("raised", exception) or ("still running", None). The main thread only waits in join(), so an interrupt always
    reaches it."""
    outcome: list[tuple[str, Any]] = []

    def body() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as error:  # noqa: BLE001 - whatever escapes the learner's loop is the observation
            outcome.append(("raised", error))

    thread = threading.Thread(target=body, daemon=True, name="nb04-q3-check")
    with watch(thread):
        thread.start()
        try:
            thread.join(RETRY_TIMEOUT)
        finally:
            if thread.is_alive():
                stopped.set()  # the work parks its thread (no CPU, no connection) the next time it is called
    return outcome[0] if outcome else ("still running", None)


def _sleeps_of(work: _Work, loop: Callable[..., Any], checked_out: Callable[[], int] = lambda: 0
               ) -> Callable[[threading.Thread], AbstractContextManager[Any]]:
    """While the loop runs: its thread's time.sleep calls (`from time import sleep` too) are kept in work.sleeps,
    each noted with the attempts started so far, and really sleep SLEEP_SCALE of what they ask; the connections
    `checked_out()` at the end of each call go to work.open_while_sleeping."""
    from . import faults

    def noted() -> int:
        work.open_while_sleeping.append(checked_out())
        return len(work.started)

    @contextmanager
    def watch(thread: threading.Thread) -> Iterator[None]:
        with faults.observed_sleep(loop, scale=SLEEP_SCALE, note=noted,
                                   watched=lambda: threading.current_thread() is thread) as calls:
            work.sleeps = calls
            yield

    return watch


def _backed_off(work: _Work, backoff: float) -> bool:
    """True if the loop waited at least backoff × 2**k between attempt k + 1 and the next: the time.sleep it asked
    for then, or (another way to wait: Event.wait …) the time that really passed."""
    gaps = [b - a for a, b in zip(work.started, work.started[1:], strict=False)]
    asked = [sum(s.seconds for s in work.sleeps if s.note == n) for n in range(1, len(work.started))]
    return all(max(gap, slept) >= 0.95 * backoff * 2 ** k for k, (gap, slept) in enumerate(zip(gaps, asked, strict=True)))


def _failures(draw: Draw, n: int) -> list[str]:
    """n retryable SQLSTATEs, each of the three at least once, in a drawn order."""
    def make(rng: Any) -> list[str]:
        states = list(RETRYABLE) + [rng.choice(RETRYABLE) for _ in range(n - len(RETRYABLE))]
        rng.shuffle(states)
        return states

    return draw.pick("errors before the success", make, ", ".join)


def retry_verdict(engine: Engine, url: str, run_with_retry: Callable[..., Any], draw: Draw) -> dict[str, Any]:
    """The learner's loop on work that fails with drawn retryable errors then succeeds; that always fails; that
    divides by zero; that raises each non-retryable SQLSTATE of class 40 or 55 (SAME_CLASS); whose
    statement the server cancels (57014, a real cancel). Each attempt's transaction id and start time, and each
    time.sleep the loop asks for (it sleeps SLEEP_SCALE of it) with the sessions it has open then, are recorded; each
    scenario runs at most RETRY_TIMEOUT s, and leaves no session open."""
    from sqlalchemy.exc import OperationalError

    from . import faults

    attempts = draw.integer("attempts", 4, 6)
    failures = _failures(draw, attempts - 1)
    backoff = draw.number("backoff", 0.01, 0.03)
    give_up = draw.integer("attempts when every one fails", 2, 4)

    def attempt(sqlstates: list[str | None], **kwargs: Any) -> tuple[str, Any, _Work]:
        _scalar(engine, "TRUNCATE attempts")
        work = _Work(sqlstates, threading.Event())
        how, value = _in_thread(lambda: run_with_retry(engine, work, **kwargs), work.stopped,
                                _sleeps_of(work, run_with_retry, engine.pool.checkedout))
        if how == "still running":
            raise WrongKind(f"your loop was still retrying after {RETRY_TIMEOUT:g} s (does it swallow every error, "
                            "or never stop?)")
        if left := engine.pool.checkedout():   # each session the loop opened is closed once it has returned or raised
            value = work = None   # what still holds the sessions (the error's frames): collected, they roll back
            gc.collect()
            raise WrongKind(f"your loop left {left} session(s) open after it {how} (an open session keeps its "
                            "connection, and a failed transaction its locks): close each one, e.g. `with "
                            "Session(engine) as session, session.begin():`", claim=LEAK_CLAIM)
        return how, value, work

    how, result, work = attempt([*failures, None], attempts=attempts, backoff=backoff)
    committed = _scalar(engine, "SELECT count(*) FROM attempts")
    _, forever, forever_work = attempt(["40001"], attempts=give_up, backoff=backoff / 20)
    _, other, other_work = attempt(["22012"], attempts=give_up, backoff=backoff / 20)
    kin = [attempt([sqlstate], attempts=give_up, backoff=backoff / 20) for sqlstate in SAME_CLASS]   # each of them
    faults.prepare(url, "nb04")
    with faults.inject(engine, url, "nb04", ["57014"], match=lambda sql: "INSERT INTO attempts" in sql):
        _, cancelled, cancelled_work = attempt([None], attempts=give_up, backoff=backoff / 20)
    works = [work, forever_work, other_work, *(w for _, _, w in kin), cancelled_work]
    return {f"returns work's result after {len(failures)} retryable errors": how == "returned" and result == "done",
            "attempts made (the retryable errors, then the success)": len(work.started),
            "every attempt ran in a new transaction": len(set(work.xids)) == len(work.xids) == len(work.started),
            "the failed attempts left nothing behind": committed == 1,
            "waits backoff × 1, × 2, × 4 … before the retries": len(work.started) == attempts and _backed_off(work,
                                                                                                     backoff),
            "gives up after exactly `attempts` attempts": len(forever_work.started) == give_up,
            "then raises the last attempt's own error (OperationalError 40001)":
                isinstance(forever, OperationalError) and forever is forever_work.last_error,
            LAST_CLAIM: all(s.note < give_up for s in forever_work.sleeps),
            "raises other errors at once, as they are (division by zero)":
                len(other_work.started) == 1 and other is other_work.last_error and not other_work.sleeps,
            SAME_CLASS_CLAIM: all(len(w.started) == 1 and e is w.last_error and not w.sleeps for _, e, w in kin),
            "raises a cancelled statement (57014, an OperationalError too) at once, as it is":
                len(cancelled_work.started) == 1 and cancelled is cancelled_work.last_error and not cancelled_work.sleeps,
            WAIT_CLAIM: not any(n for w in works for n in w.open_while_sleeping)}


def _expected_retry(draw: Draw) -> dict[str, Any]:
    """What a correct loop shows under these conditions: every claim holds, and it made `attempts` attempts."""
    attempts = draw.integer("attempts", 4, 6)
    return {f"returns work's result after {attempts - 1} retryable errors": True,
            "attempts made (the retryable errors, then the success)": attempts,
            **dict.fromkeys(["every attempt ran in a new transaction", "the failed attempts left nothing behind",
                             "waits backoff × 1, × 2, × 4 … before the retries",
                             "gives up after exactly `attempts` attempts",
                             "then raises the last attempt's own error (OperationalError 40001)", LAST_CLAIM,
                             "raises other errors at once, as they are (division by zero)", SAME_CLASS_CLAIM,
                             "raises a cancelled statement (57014, an OperationalError too) at once, as it is",
                             WAIT_CLAIM], True)}


# references ----------------------------------------------------------------------------------------------------

def sell_reference(session: Any, product_id: int) -> int:
    """Reference for q1: the database does the arithmetic, under the row's lock."""
    from sqlalchemy import update

    from ..models import Product

    return session.execute(update(Product).where(Product.id == product_id)
                           .values(inventory=Product.inventory - 1).returning(Product.inventory)).scalar_one()


TRANSFER_REFERENCE = [
    "SELECT id FROM accounts WHERE id IN (:from_id, :to_id) ORDER BY id FOR UPDATE",
    "UPDATE accounts SET balance = balance - :amount WHERE id = :from_id",
    "UPDATE accounts SET balance = balance + :amount WHERE id = :to_id",
]


def retry_reference(engine: Engine, work: Callable[[Any], Any], attempts: int = 5, backoff: float = 0.05) -> Any:
    """Reference for q3: a fresh transaction per attempt; 40001/40P01/55P03 retried after an exponential backoff;
    the last failure (or any other error) raised as it is."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    for attempt in range(1, attempts + 1):
        try:
            with Session(engine) as session, session.begin():
                return work(session)
        except OperationalError as error:
            if error.orig.sqlstate not in RETRYABLE or attempt == attempts:
                raise
        time.sleep(backoff * 2 ** (attempt - 1))
    return None


# the questions -------------------------------------------------------------------------------------------------

Q1 = Question(
    name="q1",
    text="`sell(session, product_id)` loses sales when two requests sell the same product at once. Fix it: every "
         "concurrent sale counts and succeeds. It returns the new inventory, leaves the commit to its "
         "caller, and never makes a sale of another product wait. The check starts from a drawn stock and also "
         "runs two sales with their statements interleaved in every order.",
    shape="a function `sell(session, product_id) -> int` (the new inventory); `session` is an ORM `Session` in an "
          "open transaction.",
    hint_text="§2 compared four fixes by what session 2 had to do. Which of them needed no retry, and which "
              "row (or rows) does each one lock? A lock taken when reading must be one that two readers cannot "
              "both hold.",
    solution_code="def sell(session, product_id):\n"
                  "    return session.execute(update(Product).where(Product.id == product_id)\n"
                  "                           .values(inventory=Product.inventory - 1)\n"
                  "                           .returning(Product.inventory)).scalar_one()\n\nq1.check(sell)",
    discussion="Why it works: the atomic `UPDATE … SET inventory = inventory - 1 … RETURNING` reads and writes the "
               "row under its row lock, so a second sale waits and then subtracts from the committed value. "
               "`select(Product).where(…).with_for_update()` with `populate_existing` passes too: the read waits.\n"
               "Common wrong answers:\n"
               "- `with_for_update(read=True)` (`FOR SHARE`), then the write: two readers both hold the shared lock, "
               "each write waits for the other, and PostgreSQL aborts one (`40P01`);\n"
               "- `LOCK TABLE products`: correct counts, but a sale of any other product waits;\n"
               "- `session.commit()` inside `sell`: the caller's transaction is no longer its own;\n"
               "- `REPEATABLE READ`: the second sale fails with `40001` and needs a retry.",
)
Q2 = Question(
    name="q2",
    text="A transfer moves `:amount` from account `:from_id` to account `:to_id` of the table `accounts` shown "
         "below. Two transfers in opposite directions that run the starter's two statements at once can deadlock. "
         "Write the list of statements so that no two or more transfers can deadlock, however their statements "
         "interleave, and a transfer between two other accounts never waits. Keep the bind parameters: the check binds them. "
         "The check draws five accounts with close ids, reads the order in which each transfer takes its locks "
         "(the accounts' id order is expected, ascending or descending, whoever the two accounts are, far apart "
         "too), and runs transfers in opposite directions, a ring of three (a→b, b→c, c→a), and a transfer "
         "between two other accounts meanwhile.",
    shape="a list of SQL strings, one statement each, with the parameters `:from_id`, `:to_id` and `:amount` "
          "(never values formatted into the string); `text()` or Core statements with `bindparam(\"from_id\")` "
          "work too. The check creates the table in `nb04`, with drawn ids and "
          "balances:\n\n"
          "```sql\nCREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);\n"
          "-- id | balance\n-- 40 |     420\n-- 43 |     158\n-- 44 |     731\n-- 49 |     266\n-- 52 |     905\n```",
    hint_text="§6: a deadlock needs transactions that each wait for a lock another one already holds. What would "
              "make every transfer ask for its locks in one order, whatever its direction? Three transfers around "
              "a ring (a→b, b→c, c→a) are checked too.",
    solution_code='transfer = [\n'
                  '    "SELECT id FROM accounts WHERE id IN (:from_id, :to_id) ORDER BY id FOR UPDATE",\n'
                  '    "UPDATE accounts SET balance = balance - :amount WHERE id = :from_id",\n'
                  '    "UPDATE accounts SET balance = balance + :amount WHERE id = :to_id",\n'
                  ']\nq2.check(transfer)',
    discussion="Why it works: every transfer locks its two rows lowest id first, in one statement, before it "
               "changes either. Locks taken in one global order cannot form a cycle, whatever the number of "
               "transfers. Two `UPDATE`s ordered by `least(:from_id, :to_id)` and `greatest(…)` pass too, and so do "
               "`pg_advisory_xact_lock` on the least id, then the greatest, before the two `UPDATE`s.\n"
               "Common wrong answers:\n"
               "- credit first, then debit: the same opposite orders, the other way round;\n"
               "- one `SELECT … FOR UPDATE` of both rows ordered sender first, or not ordered at all: a statement "
               "locks rows one at a time, in the order it returns them (the check reads that order from the "
               "server);\n"
               "- an order that is right for every pair but is not one order (a rule that depends on the pair): "
               "a ring of three transfers deadlocks;\n"
               "- `pg_advisory_xact_lock(:from_id), pg_advisory_xact_lock(:to_id)`, even in one `SELECT`: the "
               "same opposite orders (the check reads them from `pg_locks`); a key per pair of accounts keeps no "
               "two transfers of one account apart, so the rows' order decides again;\n"
               "- `LOCK TABLE accounts`: no deadlock, but every transfer waits for every other;\n"
               "- a short `lock_timeout` first: the deadlock becomes a `55P03` failure instead.",
)
Q3 = Question(
    name="q3",
    text="`run_with_retry(engine, work, attempts=5, backoff=0.05)` runs `work(session)` in a transaction and returns "
         "its result. When `work` fails with a serialization failure (40001), a deadlock (40P01) or a lock timeout "
         "(55P03), make it run `work` again, each time in a new transaction. Run it at most `attempts` times in "
         "all, waiting at least backoff, then 2 × backoff, 4 × backoff … seconds before the first, second, third … "
         "retry, with the failed attempt's session closed. After the last attempt, raise the "
         "error that attempt got at once, unchanged; raise any other error at once too.",
    shape="a function `run_with_retry(engine, work, attempts=5, backoff=0.05)` that returns what `work(session)` "
          "returned.",
    hint_text="§8's loop is a start: which of its lines decide what is retried, and where does a wait fit "
              "between one attempt and the next? A savepoint is not a new transaction, and not every "
              "`OperationalError` is worth another try.",
    solution_code="def run_with_retry(engine, work, attempts=5, backoff=0.05):\n"
                  "    for attempt in range(1, attempts + 1):\n"
                  "        try:\n"
                  "            with Session(engine) as session, session.begin():\n"
                  "                return work(session)\n"
                  "        except OperationalError as error:\n"
                  "            if error.orig.sqlstate not in {\"40001\", \"40P01\", \"55P03\"} or attempt == attempts:\n"
                  "                raise\n"
                  "        time.sleep(backoff * 2 ** (attempt - 1))\n\nq3.check(run_with_retry)",
    discussion="Why it works: each attempt opens its own `Session` and transaction, so a retry starts from a fresh "
               "snapshot. Only the three SQLSTATEs that a second try can cure are retried; the last one is "
               "re-raised with `raise`, unchanged.\n"
               "Common wrong answers:\n"
               "- `except OperationalError:` without the SQLSTATE: a statement cancelled by `statement_timeout` "
               "(`57014`) is an `OperationalError` too, and retrying it multiplies the load that caused it;\n"
               "- `except Exception`: retries bugs (a division by zero) as well;\n"
               "- retrying inside one transaction or a savepoint: the failed transaction cannot go on;\n"
               "- waiting inside the failed attempt's session: its transaction keeps its locks through the backoff;\n"
               "- returning `None` or raising a new error after the last attempt: the caller loses the SQLSTATE.",
)
QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 04, on tables of the scratch schema nb04; conditions drawn at each check, each check on
    an engine of its own (`_own_engine`)."""
    q1 = Q1.exercise(reference=lambda draw: dict.fromkeys(Q1_CLAIMS, True),
                     evaluate=lambda sell, draw: _checked(wb, lambda engine: sell_verdict(
                         engine, _callable(sell, "sell"), draw)),
                     starter=SELL_STARTER, drawn=True)
    q2 = StatementsExercise(name=Q2.name, question=Q2.text, shape=Q2.shape, hint_text=Q2.hint_text,
                            solution_code=Q2.solution_code, discussion=Q2.discussion,
                            reference=lambda draw: dict.fromkeys(Q2_CLAIMS, True),
                            evaluate=lambda answer, draw: _checked(wb, lambda engine: transfer_verdict(
                                engine, answer, draw)), drawn=True)
    q3 = Q3.exercise(reference=_expected_retry,
                     evaluate=lambda loop, draw: _checked(wb, lambda engine: retry_verdict(
                         engine, wb.url, _callable(loop, "run_with_retry"), draw)),
                     starter=RETRY_STARTER, drawn=True)
    return q1, q2, q3


def _callable(answer: Any, name: str) -> Any:
    if not callable(answer):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer
