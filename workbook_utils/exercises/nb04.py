"""Exercises of notebook 04 (transactions and locking races): fix a lost update, order locks, retry correctly.

Each checker runs the learner's code in a scripted race (`workbook_utils.races`) on the scratch schema nb04.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise, WrongKind

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
TRANSFER_STARTER = '''
def transfer_statements(from_id, to_id, amount):
    return [f"UPDATE accounts SET balance = balance - {amount} WHERE id = {from_id}",
            f"UPDATE accounts SET balance = balance + {amount} WHERE id = {to_id}"]
'''
RETRY_STARTER = '''
def run_with_retry(engine, work, attempts=5, backoff=0.05):
    with Session(engine) as session, session.begin():
        return work(session)
'''
RETRY_TIMEOUT = 5.0  # seconds a learner's retry loop may run in one scenario before the check gives up on it
QUEUE = "BLOCKS|ok"  # a step that may wait, or queue behind its session's waiting step
TABLES = """
    CREATE TABLE IF NOT EXISTS nb04.accounts (id int PRIMARY KEY, balance int NOT NULL);
    CREATE TABLE IF NOT EXISTS nb04.attempts (n int);
    CREATE TABLE IF NOT EXISTS nb04.products (LIKE public.products INCLUDING ALL);
    INSERT INTO nb04.products SELECT * FROM public.products WHERE id IN (1, 2) ON CONFLICT DO NOTHING"""


class _Runaway(BaseException):
    """Raised by the check's work function when a retry loop keeps going far past any sane bound."""


def _engine(wb: Workbook) -> Engine:
    from sqlalchemy import text

    # every session of a check is bounded, even one a learner's runaway loop leaves behind
    engine = wb.make_engine(connect_args={"options": "-c search_path=nb04 -c lock_timeout=5s -c statement_timeout=10s "
                                                     "-c idle_in_transaction_session_timeout=30s"})
    with engine.begin() as conn:
        conn.execute(text(TABLES))
    return engine


def _scalar(engine: Engine, sql: str) -> Any:
    from sqlalchemy import text

    with engine.begin() as conn:
        result = conn.execute(text(sql))
        return result.scalar() if result.returns_rows else None


def sell_verdict(engine: Engine, sell: Callable[[Any, int], int]) -> dict[str, bool]:
    """Two sales of product 1 race (s2 sells while s1 is uncommitted); s3 peeks and sells product 2 meanwhile.

    The stock starts at a random number, so no hard-coded inventory can pass.
    """
    from .. import races

    start = random.randint(20, 90)
    _scalar(engine, f"UPDATE products SET inventory = {start}, version = 1 WHERE id IN (1, 2)")

    def s1_sale(s: Any) -> int:
        """sell(session, 1)"""
        return sell(s, 1)

    def other_sale(s: Any) -> int:
        """sell(session, 2)"""
        return sell(s, 2)

    race = races.run(engine, [("s1", s1_sale), ("s3", "SELECT inventory FROM products WHERE id = 1"),
                              ("s3", other_sale, QUEUE), ("s2", s1_sale, QUEUE), ("s1", "COMMIT", QUEUE),
                              ("s2", "COMMIT", QUEUE), ("s3", "COMMIT", QUEUE)])
    return {"both sales of product 1 counted (stock − 2)": _scalar(engine, "SELECT inventory FROM products "
                                                                           "WHERE id = 1") == start - 2,
            "every sale succeeded": set(race.steps.outcome) == {"ok"},
            "sell() returns the new inventory": {race.value(1), race.value(4)} == {start - 1, start - 2},
            "sell() leaves the commit to its caller": race.value(2) == start,
            "a sale of another product does not wait for it": not race.steps.loc[3, "waited for"]}


def _statements(statements: Callable[[int, int, int], list[str]], *args: int) -> list[str]:
    """The learner's statements for one transfer: a list of single SQL statements, or WrongKind."""
    sqls = statements(*args)
    if not isinstance(sqls, (list, tuple)) or not sqls or not all(isinstance(q, str) for q in sqls):
        raise WrongKind("transfer_statements should return a list of SQL strings, one statement per item")
    if any(";" in q.strip().rstrip(";") for q in sqls):
        raise WrongKind("one statement per item, please: an item contains `;` (two statements in one string "
                        "would run as one step, so the check could not interleave them)")
    return list(sqls)


def transfer_verdict(engine: Engine, statements: Callable[[int, int, int], list[str]]) -> dict[str, bool]:
    """Transfers 1→2 and 2→1 in every interleaving that could deadlock; a transfer 3→4 runs while both are open.

    A deadlock needs each transaction to hold some locks (a prefix of its statements) and wait for the other's:
    so s1 runs its first i statements, s2 its first j, then both go on, for every i and j. Each statement is
    one step, so a statement that takes no lock cannot hide the others' order.
    """
    from sqlalchemy import text

    from .. import races

    deadlock_ms = int(_scalar(engine, "SELECT setting FROM pg_settings WHERE name = 'deadlock_timeout'"))
    one, two, other = _statements(statements, 1, 2, 10), _statements(statements, 2, 1, 5), _statements(statements, 3, 4, 10)

    def steps(session: str, sqls: list[str]) -> list[tuple]:
        return [(session, sql, QUEUE) for sql in sqls]

    verdict = {"no deadlock in any interleaving": True, "every transfer committed": True,
               "the balances are right": True, "a transfer between two other accounts does not wait": True}
    for i in range(1, len(one) + 1):
        for j in range(1, len(two) + 1):
            _scalar(engine, "TRUNCATE accounts; INSERT INTO accounts SELECT generate_series(1, 4), 100")
            script = [*steps("s1", one[:i]), *steps("s2", two[:j]), *steps("s3", other), ("s3", "COMMIT", QUEUE),
                      *steps("s1", one[i:]), *steps("s2", two[j:]), ("s1", "COMMIT", QUEUE), ("s2", "COMMIT", QUEUE)]
            race = races.run(engine, script, lock_timeout=f"{max(3 * deadlock_ms, 2000)}ms")
            with engine.connect() as conn:
                balances = dict(conn.execute(text("SELECT id, balance FROM accounts ORDER BY id")).all())
            verdict["no deadlock in any interleaving"] &= "40P01" not in set(race.steps.outcome)
            verdict["every transfer committed"] &= set(race.steps.outcome) == {"ok"}
            verdict["the balances are right"] &= balances == {1: 95, 2: 105, 3: 90, 4: 110}
            verdict["a transfer between two other accounts does not wait"] &= \
                not race.steps.query("session == 's3'")["waited for"].any()
            if not all(verdict.values()):
                return verdict  # the first interleaving that fails is enough (and a deadlock costs deadlock_timeout)
    return verdict


RETRYABLE = {"40001", "40P01", "55P03"}


class _Work:
    """A unit of work that logs each attempt (its transaction id, when it started), then fails with the next
    SQLSTATE of `sqlstates` (None: succeeds); the error it raised last is kept, to compare with what came out."""

    def __init__(self, sqlstates: list[str | None], stopped: threading.Event) -> None:
        self.sqlstates, self.stopped = sqlstates, stopped
        self.xids: list[str] = []
        self.started: list[float] = []
        self.last_error: BaseException | None = None

    def __call__(self, session: Any) -> str:
        from sqlalchemy import text

        if self.stopped.is_set():  # the check gave up on this loop: park its thread here for good, holding nothing
            while True:  # not self.stopped.wait(): it is set, so that returns at once and a swallowing loop spins
                time.sleep(3600)
        if self.stopped.is_set() or len(self.started) >= 50:
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


def _in_thread(call: Callable[[], Any], stopped: threading.Event) -> tuple[str, Any]:
    """Run a learner's loop on a daemon thread, at most RETRY_TIMEOUT s: ("returned", value), ("raised", exception)
    or ("still running", None). The main thread only waits in join(), so an interrupt always reaches it."""
    outcome: list[tuple[str, Any]] = []

    def body() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as error:  # noqa: BLE001 - whatever escapes the learner's loop is the observation
            outcome.append(("raised", error))

    thread = threading.Thread(target=body, daemon=True, name="nb04-q3-check")
    thread.start()
    try:
        thread.join(RETRY_TIMEOUT)
    finally:
        if thread.is_alive():
            stopped.set()  # the work parks its thread (no CPU, no connection) the next time it is called
    return outcome[0] if outcome else ("still running", None)


def retry_verdict(engine: Engine, run_with_retry: Callable[..., Any]) -> dict[str, Any]:
    """The learner's loop on work that fails 40001, 40P01, 55P03 then succeeds; forever; and with a non-retryable
    error. Each attempt's transaction id and start time are recorded; each scenario runs at most RETRY_TIMEOUT s."""
    from sqlalchemy.exc import OperationalError

    backoff = 0.02

    def attempt(sqlstates: list[str | None], **kwargs: Any) -> tuple[str, Any, _Work]:
        _scalar(engine, "TRUNCATE attempts")
        work = _Work(sqlstates, threading.Event())
        how, value = _in_thread(lambda: run_with_retry(engine, work, **kwargs), work.stopped)
        if how == "still running":
            raise WrongKind(f"your loop was still retrying after {RETRY_TIMEOUT:g} s (does it swallow every error, "
                            "or never stop?)")
        return how, value, work

    how, result, work = attempt(["40001", "40P01", "55P03", None], attempts=4, backoff=backoff)
    committed = _scalar(engine, "SELECT count(*) FROM attempts")
    gaps = [b - a for a, b in zip(work.started, work.started[1:], strict=False)]
    _, forever, forever_work = attempt(["40001"], attempts=3, backoff=backoff / 20)
    _, other, other_work = attempt(["22012"], attempts=3, backoff=backoff / 20)
    return {"returns work's result after a 40001, a 40P01 and a 55P03": how == "returned" and result == "done",
            "attempts made (40001, 40P01, 55P03, success)": len(work.started),
            "every attempt ran in a new transaction": len(set(work.xids)) == len(work.xids) == len(work.started),
            "the failed attempts left nothing behind": committed == 1,
            "waits backoff × 1, × 2, × 4 before the retries": len(gaps) == 3 and all(
                gap >= 0.95 * backoff * 2 ** k for k, gap in enumerate(gaps)),
            "gives up after exactly `attempts` attempts (3 asked)": len(forever_work.started) == 3,
            "then raises the last attempt's own error (OperationalError 40001)":
                isinstance(forever, OperationalError) and forever is forever_work.last_error,
            "raises other errors at once, as they are (division by zero)":
                len(other_work.started) == 1 and other is other_work.last_error}


def sell_reference(session: Any, product_id: int) -> int:
    """Reference for q1: the database does the arithmetic, under the row's lock."""
    from sqlalchemy import update

    from ..models import Product

    return session.execute(update(Product).where(Product.id == product_id)
                           .values(inventory=Product.inventory - 1).returning(Product.inventory)).scalar_one()


def transfer_reference(from_id: int, to_id: int, amount: int) -> list[str]:
    """Reference for q2: lock both rows in one order (lowest id first), then move the amount."""
    return [f"SELECT id FROM accounts WHERE id IN ({from_id}, {to_id}) ORDER BY id FOR UPDATE",
            f"UPDATE accounts SET balance = balance - {amount} WHERE id = {from_id}",
            f"UPDATE accounts SET balance = balance + {amount} WHERE id = {to_id}"]


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


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 04, on tables of the scratch schema nb04."""
    engine = _engine(wb)
    q1 = Exercise(
        name="q1",
        question="sell(session, product_id) loses sales when two requests sell the same product at once. Fix it "
                 "so that every concurrent sale counts and succeeds (no retry needed), it returns the new "
                 "inventory, leaves the commit to its caller, and never makes a sale of *another* product wait. "
                 "(The check starts from a random stock.)",
        reference=lambda: sell_verdict(engine, sell_reference),
        hint_text="§1 compared four fixes by what session 2 had to do. Which of them needed no retry, and which "
                  "row (or rows) does each one lock?",
        solution_code="def sell(session, product_id):\n"
                      "    return session.execute(update(Product).where(Product.id == product_id)\n"
                      "                           .values(inventory=Product.inventory - 1)\n"
                      "                           .returning(Product.inventory)).scalar_one()\n\nq1.check(sell)",
        evaluate=lambda sell: sell_verdict(engine, sell),
        starter=SELL_STARTER,
    )
    q2 = Exercise(
        name="q2",
        question="transfer_statements(from_id, to_id, amount) returns the SQL of one transfer between two accounts "
                 "(table accounts: id, balance), one statement per item. Two transfers in opposite directions, run "
                 "at once, deadlock. Change it so that no two transfers can deadlock, however their statements "
                 "interleave, without making unrelated transfers wait. (The check runs the two transfers in every "
                 "interleaving that could deadlock, one statement per step.)",
        reference=lambda: transfer_verdict(engine, transfer_reference),
        hint_text="§5: a deadlock needs two transactions waiting for locks the other already holds. What would "
                  "make both transfers ask for their locks in the same order, whatever their direction?",
        solution_code='def transfer_statements(from_id, to_id, amount):\n'
                      '    return [f"SELECT id FROM accounts WHERE id IN ({from_id}, {to_id}) ORDER BY id FOR UPDATE",\n'
                      '            f"UPDATE accounts SET balance = balance - {amount} WHERE id = {from_id}",\n'
                      '            f"UPDATE accounts SET balance = balance + {amount} WHERE id = {to_id}"]\n\n'
                      'q2.check(transfer_statements)',
        evaluate=lambda statements: transfer_verdict(engine, _callable(statements, "transfer_statements")),
        starter=TRANSFER_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="run_with_retry(engine, work, attempts=5, backoff=0.05) runs work(session) in a transaction and "
                 "returns its result. Make it run work again, each time in a new transaction, when it fails with a "
                 "serialization failure (40001), a deadlock (40P01) or a lock timeout (55P03): at most `attempts` "
                 "times in all, waiting backoff, then 2 × backoff, 4 × backoff … seconds before the retries. After "
                 "the last attempt, raise the error that attempt got, unchanged; raise any other error at once.",
        reference=lambda: retry_verdict(engine, retry_reference),
        hint_text="§7's loop is a start: which of its lines decide what is retried, and where does a wait fit "
                  "between one attempt and the next? A savepoint is not a new transaction.",
        solution_code="def run_with_retry(engine, work, attempts=5, backoff=0.05):\n"
                      "    for attempt in range(1, attempts + 1):\n"
                      "        try:\n"
                      "            with Session(engine) as session, session.begin():\n"
                      "                return work(session)\n"
                      "        except OperationalError as error:\n"
                      "            if error.orig.sqlstate not in {\"40001\", \"40P01\", \"55P03\"} or attempt == attempts:\n"
                      "                raise\n"
                      "        time.sleep(backoff * 2 ** (attempt - 1))\n\nq3.check(run_with_retry)",
        evaluate=lambda run_with_retry: retry_verdict(engine, _callable(run_with_retry, "run_with_retry")),
        starter=RETRY_STARTER,
    )
    return q1, q2, q3


def _callable(answer: Any, name: str) -> Any:
    if not callable(answer):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer
