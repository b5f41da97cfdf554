"""Notebook 04's exercises: references and printed solutions pass; wrong answers and lesson-breaking "fixes" fail."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb04
from workbook_utils.models import Product


def _cpu_seconds(native_ids: list[int], over: float) -> float:
    """CPU seconds these threads of this process use in `over` seconds of wall time."""
    def used() -> float:
        return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in native_ids)

    before = used()
    time.sleep(over)
    return used() - before


@pytest.fixture(scope="module")
def exercises():
    from workbook_utils import setup

    workbook = setup("04")
    yield nb04.load(workbook)
    workbook.close()


def _starter(source, name, tmp_path):
    """The starter function, loaded from a file (so its source can be read back, as from a notebook cell)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_nb04_references_printed_solutions_and_other_right_answers_pass(exercises, capsys):
    q1, q2, q3 = exercises
    assert q1.verdict(nb04.sell_reference) == (CORRECT, None)
    assert q2.verdict(nb04.transfer_reference) == (CORRECT, None)
    assert q3.verdict(nb04.retry_reference) == (CORRECT, None)

    def sell_locked(session, product_id):
        product = session.scalars(select(Product).where(Product.id == product_id).with_for_update()).one()
        product.inventory -= 1
        session.flush()
        return product.inventory

    def transfer_sorted(from_id, to_id, amount):
        low, high = sorted([(from_id, -amount), (to_id, amount)])
        return [f"UPDATE accounts SET balance = balance + {d} WHERE id = {i}" for i, d in (low, high)]

    from sqlalchemy import select

    assert q1.verdict(sell_locked) == (CORRECT, None)
    assert q2.verdict(transfer_sorted) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "update": update, "Product": Product, "Session": Session,
                 "OperationalError": OperationalError, "time": time}
    for exercise in exercises:
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb04_starters_are_not_attempted(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert q1.verdict(_starter(nb04.SELL_STARTER, "sell", tmp_path))[0] == NOT_ATTEMPTED
    assert q2.verdict(_starter(nb04.TRANSFER_STARTER, "transfer_statements", tmp_path))[0] == NOT_ATTEMPTED
    assert q3.verdict(_starter(nb04.RETRY_STARTER, "run_with_retry", tmp_path))[0] == NOT_ATTEMPTED


def test_nb04_q1_rejects_lost_updates_table_locks_commits_and_failures(exercises):
    q1 = exercises[0]

    def naive(session, product_id):   # the starter, reworded: still read-modify-write
        p = session.get(Product, product_id)
        p.inventory = p.inventory - 1
        session.flush()
        return p.inventory

    def table_lock(session, product_id):
        session.execute(text("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE"))
        return nb04.sell_reference(session, product_id)

    def commits(session, product_id):
        new = nb04.sell_reference(session, product_id)
        session.commit()
        return new

    def repeatable_read(session, product_id):
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return naive(session, product_id)

    def no_return(session, product_id):
        nb04.sell_reference(session, product_id)

    def hard_coded(session, product_id):   # right only if the stock always started at 10
        first = session.execute(text("UPDATE products SET inventory = 9 WHERE id = :id AND inventory = 10 "
                                     "RETURNING inventory"), {"id": product_id}).scalar()
        return first or session.execute(text("UPDATE products SET inventory = 8 WHERE id = :id RETURNING inventory"),
                                        {"id": product_id}).scalar_one()

    for wrong, why in [(naive, "both sales of product 1 counted"), (table_lock, "another product does not wait"),
                       (commits, "leaves the commit"), (repeatable_read, "product 1 counted"),
                       (no_return, "returns the new inventory"), (hard_coded, "product 1 counted")]:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb04_q2_rejects_opposite_orders_and_a_table_lock(exercises):
    q2 = exercises[1]

    def credit_first(from_id, to_id, amount):
        return [f"UPDATE accounts SET balance = balance + {amount} WHERE id = {to_id}",
                f"UPDATE accounts SET balance = balance - {amount} WHERE id = {from_id}"]

    def table_lock(from_id, to_id, amount):
        return ["LOCK TABLE accounts IN EXCLUSIVE MODE", *nb04.transfer_reference(from_id, to_id, amount)[1:]]

    def wrong_amount(from_id, to_id, amount):
        return nb04.transfer_reference(from_id, to_id, amount)[:2]

    def select_1_first(from_id, to_id, amount):   # a first statement that locks nothing, then opposite orders
        return ["SELECT 1", *nb04.transfer_reference(from_id, to_id, amount)[1:]]

    def lock_timeout_first(from_id, to_id, amount):   # a lock_timeout turns the deadlock into another failure
        return ["SET LOCAL lock_timeout = '50ms'", *nb04.transfer_reference(from_id, to_id, amount)[1:]]

    def joined(from_id, to_id, amount):   # both UPDATEs in one string: one step, which hides the order
        return ["; ".join(nb04.transfer_reference(from_id, to_id, amount)[1:])]

    def not_a_list(from_id, to_id, amount):
        return nb04.transfer_reference(from_id, to_id, amount)[1]

    for wrong, why in [(credit_first, "no deadlock"), (table_lock, "other accounts does not wait"),
                       (wrong_amount, "balances are right"), (select_1_first, "no deadlock"),
                       (lock_timeout_first, "every transfer committed"), (joined, "one statement per item"),
                       (not_a_list, "a list of SQL strings")]:
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb04_q3_rejects_no_retry_unbounded_swallowing_and_retrying_everything(exercises, monkeypatch):
    q3 = exercises[2]
    monkeypatch.setattr(nb04, "RETRY_TIMEOUT", 1.0)
    retryable = {"40001", "40P01", "55P03"}

    def unbounded(engine, work, attempts=5, backoff=0.05):
        attempt = 0
        while True:
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError:
                time.sleep(backoff * 2 ** min(attempt, 2))
                attempt += 1

    def swallows(engine, work, attempts=5, backoff=0.05):   # the retry that swallows the last error
        for attempt in range(attempts):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except Exception:
                time.sleep(backoff * 2 ** attempt)
        return None

    def retries_everything(engine, work, attempts=5, backoff=0.05):
        for attempt in range(attempts):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(backoff * 2 ** attempt)

    def one_session(engine, work, attempts=5, backoff=0.05):   # retries inside a transaction that already failed
        with Session(engine) as session, session.begin():
            for attempt in range(attempts):
                try:
                    return work(session)
                except OperationalError:
                    if attempt == attempts - 1:
                        raise

    def savepoints(engine, work, attempts=5, backoff=0.05):   # a real 40001 recurs in the same snapshot
        with Session(engine) as session, session.begin():
            for attempt in range(1, attempts + 1):
                try:
                    with session.begin_nested():
                        return work(session)
                except OperationalError as error:
                    if error.orig.sqlstate not in retryable or attempt == attempts:
                        raise
                time.sleep(backoff * 2 ** (attempt - 1))

    def ten_tries(engine, work, attempts=5, backoff=0.05):   # ignores `attempts`
        return nb04.retry_reference(engine, work, attempts=10, backoff=backoff)

    def gives_up_with_its_own_error(engine, work, attempts=5, backoff=0.05):   # the SQLSTATE is gone
        try:
            return nb04.retry_reference(engine, work, attempts, backoff)
        except OperationalError as error:
            if error.orig.sqlstate in retryable:
                raise RuntimeError("gave up") from error
            raise

    def no_backoff(engine, work, attempts=5, backoff=0.05):
        return nb04.retry_reference(engine, work, attempts, backoff=0)

    def not_lock_timeouts(engine, work, attempts=5, backoff=0.05):   # §7's loop, with the backoff
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in {"40001", "40P01"} or attempt == attempts:
                    raise
            time.sleep(backoff * 2 ** (attempt - 1))

    def swallows_everything_forever(engine, work, attempts=5, backoff=0.05):   # even BaseException, even ^C
        while True:
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except:  # noqa: E722
                pass

    for wrong, why in [(unbounded, "exactly `attempts`"), (swallows, "last attempt's own error"),
                       (retries_everything, "other errors at once"), (one_session, "after a 40001"),
                       (savepoints, "new transaction"), (ten_tries, "exactly `attempts`"),
                       (gives_up_with_its_own_error, "last attempt's own error"), (no_backoff, "waits backoff"),
                       (not_lock_timeouts, "55P03"), (swallows_everything_forever, "still retrying after 1 s"),
                       ("run_with_retry", "pass your function")]:
        started = time.monotonic()
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong, diff)
        assert time.monotonic() - started < 5, wrong   # a runaway loop never holds the check for long
    from workbook_utils import db, urls

    parked = [t.native_id for t in threading.enumerate() if t.name == "nb04-q3-check"]
    assert parked, "the loop that swallows everything is parked on its thread, not ended"
    assert _cpu_seconds(parked, over=0.5) < 0.1, "a parked loop spins (it held a core and the GIL for the rest of the run)"
    with db.make_engine(urls.database_url("tiny")).connect() as conn:   # the parked loop holds no session
        assert conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%04%' "
                                 "AND state LIKE 'idle in transaction%'")).scalar() == 0
