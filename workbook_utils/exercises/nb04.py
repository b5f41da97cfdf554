"""Exercises of notebook 04 (transactions and locking races): fix a lost update, order locks, retry correctly.

Each checker runs the learner's code in a scripted race (`workbook_utils.races`) on the scratch schema nb04.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import Exercise

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
def run_with_retry(engine, work, attempts=5):
    with Session(engine) as session, session.begin():
        return work(session)
'''
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

    engine = wb.make_engine(connect_args={"options": "-c search_path=nb04"})
    with engine.begin() as conn:
        conn.execute(text(TABLES))
    return engine


def _scalar(engine: Engine, sql: str) -> Any:
    from sqlalchemy import text

    with engine.begin() as conn:
        result = conn.execute(text(sql))
        return result.scalar() if result.returns_rows else None


def sell_verdict(engine: Engine, sell: Callable[[Any, int], int]) -> dict[str, bool]:
    """Two sales of product 1 race (s2 sells while s1 is uncommitted); s3 peeks and sells product 2 meanwhile."""
    from .. import races

    _scalar(engine, "UPDATE products SET inventory = 10, version = 1 WHERE id IN (1, 2)")

    def s1_sale(s: Any) -> int:
        """sell(session, 1)"""
        return sell(s, 1)

    def other_sale(s: Any) -> int:
        """sell(session, 2)"""
        return sell(s, 2)

    race = races.run(engine, [("s1", s1_sale), ("s3", "SELECT inventory FROM products WHERE id = 1"),
                              ("s3", other_sale, QUEUE), ("s2", s1_sale, QUEUE), ("s1", "COMMIT", QUEUE),
                              ("s2", "COMMIT", QUEUE), ("s3", "COMMIT", QUEUE)])
    return {"both sales of product 1 counted (10 → 8)": _scalar(engine, "SELECT inventory FROM products "
                                                                         "WHERE id = 1") == 8,
            "every sale succeeded": set(race.steps.outcome) == {"ok"},
            "sell() returns the new inventory": {race.value(1), race.value(4)} == {8, 9},
            "sell() leaves the commit to its caller": race.value(2) == 10,
            "a sale of another product does not wait for it": not race.steps.loc[3, "waited for"]}


def transfer_verdict(engine: Engine, statements: Callable[[int, int, int], list[str]]) -> dict[str, bool]:
    """Transfers 1→2 and 2→1 interleaved statement by statement; a transfer 3→4 runs while both are open."""
    from sqlalchemy import text

    from .. import races

    _scalar(engine, "TRUNCATE accounts; INSERT INTO accounts SELECT generate_series(1, 4), 100")
    deadlock_ms = int(_scalar(engine, "SELECT setting FROM pg_settings WHERE name = 'deadlock_timeout'"))

    def run_all(sqls: list[str]) -> Callable[[Any], None]:
        def step(s: Any) -> None:
            for sql in sqls:
                s.execute(text(sql))
        step.__doc__ = "; ".join(sqls) or "(nothing)"
        return step

    one, two = statements(1, 2, 10), statements(2, 1, 5)
    race = races.run(engine, [("s1", run_all(one[:1])), ("s2", run_all(two[:1])),
                              ("s3", run_all(statements(3, 4, 10))), ("s1", run_all(one[1:]), QUEUE),
                              ("s2", run_all(two[1:]), QUEUE), ("s1", "COMMIT", QUEUE), ("s2", "COMMIT", QUEUE),
                              ("s3", "COMMIT", QUEUE)],
                     lock_timeout=f"{max(3 * deadlock_ms, 2000)}ms")
    with engine.connect() as conn:
        balances = dict(conn.execute(text("SELECT id, balance FROM accounts ORDER BY id")).all())
    return {"no deadlock": "40P01" not in set(race.steps.outcome),
            "every transfer committed": set(race.steps.outcome) == {"ok"},
            "the balances are right": balances == {1: 95, 2: 105, 3: 90, 4: 110},
            "a transfer between two other accounts does not wait": not race.steps.loc[3, "waited for"]}


def _failing(engine: Engine, sqlstates: list[str | None], calls: list[int]) -> Callable[[Any], str]:
    """A unit of work that logs its attempt, then fails with the next SQLSTATE of `sqlstates` (None: succeeds)."""
    from sqlalchemy import text

    def work(session: Any) -> str:
        calls[0] += 1
        if calls[0] > 50:
            raise _Runaway("more than 50 attempts")
        session.execute(text("INSERT INTO attempts VALUES (:n)"), {"n": calls[0]})
        state = sqlstates[min(calls[0], len(sqlstates)) - 1]
        if state == "22012":
            session.execute(text("SELECT 1 / 0"))
        elif state:
            session.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{state}'; END $$"))
        return "done"
    return work


def retry_verdict(engine: Engine, run_with_retry: Callable[..., Any]) -> dict[str, Any]:
    """Run the learner's loop on work that fails 40001, 40P01 then succeeds; forever; and with a non-retryable error."""
    def attempt(sqlstates: list[str | None]) -> tuple[Any, int, bool]:
        _scalar(engine, "TRUNCATE attempts")
        calls = [0]
        try:
            return run_with_retry(engine, _failing(engine, sqlstates, calls)), calls[0], False
        except _Runaway:
            return None, calls[0], False
        except Exception:  # raising is what a bounded loop must end with
            return None, calls[0], True

    result, calls, _ = attempt(["40001", "40P01", None])
    committed = _scalar(engine, "SELECT count(*) FROM attempts")
    _, forever_calls, forever_raised = attempt(["40001"])
    _, other_calls, other_raised = attempt(["22012"])
    return {"returns work's result after a 40001 and a 40P01": result == "done",
            "attempts made (40001, 40P01, success)": calls,
            "the failed attempts left nothing behind": committed == 1,
            "gives up on a failure that never ends (raises within 10 attempts)": forever_raised and forever_calls <= 10,
            "does not retry other errors (division by zero raised at once)": other_raised and other_calls == 1}


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


def retry_reference(engine: Engine, work: Callable[[Any], Any], attempts: int = 5) -> Any:
    """Reference for q3: a fresh transaction per attempt; only 40001/40P01 retried; the last failure raised."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    for attempt in range(1, attempts + 1):
        try:
            with Session(engine) as session, session.begin():
                return work(session)
        except OperationalError as error:
            if error.orig.sqlstate not in {"40001", "40P01"} or attempt == attempts:
                raise
    return None


def load(wb: Workbook) -> tuple[Exercise, Exercise, Exercise]:
    """q1, q2, q3 of notebook 04, on tables of the scratch schema nb04."""
    engine = _engine(wb)
    q1 = Exercise(
        name="q1",
        question="sell(session, product_id) loses sales when two requests sell the same product at once. Fix it "
                 "so that every concurrent sale counts and succeeds (no retry needed), it returns the new "
                 "inventory, leaves the commit to its caller, and never makes a sale of *another* product wait.",
        reference=lambda: sell_verdict(engine, sell_reference),
        hint_text="§1 and §2: which fixes need no retry? One of them does the arithmetic in the UPDATE itself; "
                  "another locks only the row it reads.",
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
                 "(table accounts: id, balance). Two transfers in opposite directions, run at once, deadlock. "
                 "Change it so that no two transfers can deadlock, without making unrelated transfers wait.",
        reference=lambda: transfer_verdict(engine, transfer_reference),
        hint_text="§5: a deadlock needs two transactions taking the same locks in different orders. Make every "
                  "transfer take its row locks in one global order, whatever its direction.",
        solution_code='def transfer_statements(from_id, to_id, amount):\n'
                      '    return [f"SELECT id FROM accounts WHERE id IN ({from_id}, {to_id}) ORDER BY id FOR UPDATE",\n'
                      '            f"UPDATE accounts SET balance = balance - {amount} WHERE id = {from_id}",\n'
                      '            f"UPDATE accounts SET balance = balance + {amount} WHERE id = {to_id}"]\n\n'
                      'q2.check(transfer_statements)',
        evaluate=lambda statements: transfer_verdict(engine, statements),
        starter=TRANSFER_STARTER,
    )
    q3 = Exercise(
        name="q3",
        question="run_with_retry(engine, work, attempts=5) should run work(session) in a transaction and run it "
                 "again, in a new transaction, when it fails with a serialization failure (40001) or a deadlock "
                 "(40P01); at most `attempts` times in all, then raise; any other error is raised at once.",
        reference=lambda: retry_verdict(engine, retry_reference),
        hint_text="Loop over the attempts; put `with Session(engine) as session, session.begin():` inside the "
                  "loop; catch OperationalError and look at error.orig.sqlstate; re-raise when it is not "
                  "retryable or on the last attempt.",
        solution_code="def run_with_retry(engine, work, attempts=5):\n"
                      "    for attempt in range(1, attempts + 1):\n"
                      "        try:\n"
                      "            with Session(engine) as session, session.begin():\n"
                      "                return work(session)\n"
                      "        except OperationalError as error:\n"
                      "            if error.orig.sqlstate not in {\"40001\", \"40P01\"} or attempt == attempts:\n"
                      "                raise\n\nq3.check(run_with_retry)",
        evaluate=lambda run_with_retry: retry_verdict(engine, run_with_retry),
        starter=RETRY_STARTER,
    )
    return q1, q2, q3
