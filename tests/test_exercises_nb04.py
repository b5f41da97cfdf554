"""Notebook 04's exercises: references and printed solutions pass; wrong answers and lesson-breaking "fixes" fail."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb04
from workbook_utils.exercises.draws import Draw
from workbook_utils.models import Product


def _cpu_seconds(native_ids: list[int], over: float) -> float:
    """CPU seconds these threads of this process use in `over` seconds of wall time."""
    def used() -> float:
        return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in native_ids)

    before = used()
    time.sleep(over)
    return used() - before


@pytest.fixture(scope="module")
def workbook():
    from workbook_utils import setup

    wb = setup("04")
    yield wb
    wb.close()


@pytest.fixture(scope="module")
def exercises(workbook):
    return nb04.load(workbook)


def _starter(source, name, tmp_path):
    """The starter function, loaded from a file (so its source can be read back, as from a notebook cell)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_nb04_references_printed_solutions_and_other_right_answers_pass_after_a_later_setup(exercises, capsys):
    from workbook_utils import setup

    q1, q2, q3 = exercises
    setup("04")   # Part 2's restart cell, run again after the exercises were loaded: nb04 is dropped and made anew
    assert q1.verdict(nb04.sell_reference) == (CORRECT, None)
    assert q3.verdict(nb04.retry_reference) == (CORRECT, None)
    assert q2.verdict(PARITY)[0] == INCORRECT   # a check that stops at the lock-order probe leaves nothing behind

    def sell_locked(session, product_id):
        query = select(Product).where(Product.id == product_id).with_for_update()
        product = session.scalars(query.execution_options(populate_existing=True)).one()
        product.inventory -= 1
        session.flush()
        return product.inventory

    transfer_sorted = [   # no SELECT: the two UPDATEs themselves, lowest id first; a `;` in a comment or at the end
        "UPDATE /* lowest id first; */ accounts SET balance = balance + CASE WHEN id = :to_id THEN :amount "
        "ELSE -:amount END WHERE id = least(:from_id, :to_id) -- then the other; in one order",
        "UPDATE accounts SET balance = balance + CASE WHEN id = :to_id THEN :amount ELSE -:amount END "
        "WHERE id = greatest(:from_id, :to_id);"]

    accounts = Table("accounts", MetaData(), Column("id", Integer, primary_key=True), Column("balance", Integer))
    transfer_core = [   # SQLAlchemy Core with bind parameters, the lock in one statement, lowest id first
        select(accounts.c.id).where(accounts.c.id.in_([bindparam("from_id"), bindparam("to_id")]))
        .order_by(accounts.c.id).with_for_update(key_share=True),
        update(accounts).where(accounts.c.id == bindparam("from_id"))
        .values(balance=accounts.c.balance - bindparam("amount")),
        text("UPDATE accounts SET balance = balance + :amount WHERE id = :to_id")]

    assert q1.verdict(sell_locked) == (CORRECT, None)
    assert q2.verdict(transfer_sorted) == (CORRECT, None)
    assert q2.verdict(transfer_core) == (CORRECT, None)
    descending = [LOCK_BOTH.format(order="ORDER BY id DESC NULLS LAST"), *nb04.TRANSFER_STARTER]   # the other way
    assert q2.verdict(descending) == (CORRECT, None)   # is one order too
    # the review's answer: its rows come after its own locks, taken in one order (the row-order probe alone rejected it)
    assert q2.verdict(ADVISORY_SORTED, seed=430157) == (CORRECT, None)
    hashed_in_id_order = [f"SELECT pg_advisory_xact_lock(hashtext('account:' || {f}(:from_id, :to_id)))"
                          for f in ("least", "greatest")] + nb04.TRANSFER_STARTER   # rvg: keys far apart, in id order
    assert q2.verdict(hashed_in_id_order) == (CORRECT, None)

    def waits_on_an_event(engine, work, attempts=5, backoff=0.05):   # no time.sleep: the real gaps are judged
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in {"40001", "40P01", "55P03"} or attempt == attempts:
                    raise
            threading.Event().wait(backoff * 2 ** (attempt - 1))

    cell = {}   # `from time import sleep` in the learner's cell: that sleep is observed too
    exec(nb04.Q3.solution_code.replace("time.sleep", "sleep").replace("q3.check(run_with_retry)", "")
         + "\nfrom time import sleep\nfrom sqlalchemy.exc import OperationalError\nfrom sqlalchemy.orm import Session\n",
         cell)
    for loop in [waits_on_an_event, cell["run_with_retry"]]:
        assert q3.verdict(loop) == (CORRECT, None), loop
    namespace = {"q1": q1, "q2": q2, "q3": q3, "update": update, "Product": Product, "Session": Session,
                 "OperationalError": OperationalError, "time": time}
    for exercise in exercises:
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out
    assert namespace["transfer"] == nb04.TRANSFER_REFERENCE   # so the reference itself passed (checked once)


def test_nb04_checks_draw_fresh_conditions_and_replay_them(exercises):
    q1, q2, _ = exercises
    q2.verdict(nb04.TRANSFER_STARTER[::-1])
    first = q2.last_draw
    q2.verdict(nb04.TRANSFER_STARTER[::-1])
    assert q2.last_draw.seed != first.seed and q2.last_draw.values != first.values
    q2.verdict(nb04.TRANSFER_STARTER[::-1], seed=first.seed)
    assert q2.last_draw.values == first.values
    q1.verdict(nb04.sell_reference)
    assert 20 <= q1.last_draw.values["stock"] <= 90


def test_nb04_starters_are_not_attempted(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert q1.verdict(_starter(nb04.SELL_STARTER, "sell", tmp_path))[0] == NOT_ATTEMPTED
    assert q2.verdict(list(nb04.TRANSFER_STARTER))[0] == NOT_ATTEMPTED
    assert q3.verdict(_starter(nb04.RETRY_STARTER, "run_with_retry", tmp_path))[0] == NOT_ATTEMPTED
    assert not any("{" in sql for sql in nb04.TRANSFER_STARTER + nb04.TRANSFER_REFERENCE)   # binds, no formatting


def test_nb04_q1_rejects_lost_updates_shared_locks_table_locks_commits_and_failures(exercises):
    q1 = exercises[0]

    def naive(session, product_id):   # the starter, reworded: still read-modify-write
        p = session.get(Product, product_id)
        p.inventory = p.inventory - 1
        session.flush()
        return p.inventory

    def for_share(session, product_id):   # both sales can read first: each write then waits for the other
        query = select(Product).where(Product.id == product_id).with_for_update(read=True)
        p = session.scalars(query.execution_options(populate_existing=True)).one()
        p.inventory -= 1
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

    def coarse_key(key):   # rv04, rvd: a key that products 1 and 2 never share, but 1 and 0 or 720721 do
        def sell(session, product_id):
            session.execute(text(f"SELECT pg_advisory_xact_lock({key})"), {"p": product_id})
            return naive(session, product_id)
        return sell

    for wrong, why in [(naive, "both sales of product 1 counted"), (for_share, "both sales read before either"),
                       *((coarse_key(key), "another product does not wait")
                         for key in ("CAST(:p AS int) % 2", "CAST(:p AS int) % 11", "CAST(:p AS int) / 2")),
                       (table_lock, "another product does not wait"), (commits, "leaves the commit"),
                       (repeatable_read, "product 1 counted"), (no_return, "returns the new inventory"),
                       (hard_coded, "product 1 counted"), (nb04.TRANSFER_REFERENCE, "pass your function sell")]:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong, diff)


def _ring_seed() -> int:
    """A seed whose ring of three accounts has ids in three different classes mod 3 (for the non-order below)."""
    return next(seed for seed in range(1000) if len({i % 3 for i in nb04.accounts(Draw(seed))[0][:3]}) == 3)


def test_nb04_q2_rejects_opposite_orders_rings_of_three_and_a_table_lock(exercises):
    q2 = exercises[1]
    reference = nb04.TRANSFER_REFERENCE
    credit_first = [reference[2], reference[1]]
    table_lock = ["LOCK TABLE accounts IN EXCLUSIVE MODE", *reference[1:]]
    wrong_amount = reference[:2]
    select_1_first = ["SELECT 1", *reference[1:]]   # a first statement that locks nothing, then opposite orders
    lock_timeout_first = ["SET LOCAL lock_timeout = '50ms'", *reference[1:]]   # the deadlock becomes a 55P03
    joined = ["; ".join(reference[1:])]   # both UPDATEs in one string: one step, which hides the order
    # one row, then the other: right for any two transfers whose ids differ mod 3, but not one order (x before y
    # when y - x ≡ 1 mod 3, rock-paper-scissors), so three transfers around a ring each hold one row and wait
    first = "CASE WHEN ((:to_id - :from_id) % 3 + 3) % 3 = 1 THEN :from_id ELSE :to_id END"
    not_one_order = [f"SELECT id FROM accounts WHERE id = {first} FOR UPDATE",
                     f"SELECT id FROM accounts WHERE id = :from_id + :to_id - {first} FOR UPDATE", *reference[1:]]
    for wrong, why, seed in [(credit_first, "two transfers in opposite directions", None),
                             (not_one_order, "no deadlock", _ring_seed()),
                             (table_lock, "other accounts does not wait", None),
                             (wrong_amount, "balances are right", None),
                             (select_1_first, "opposite directions", None),
                             (lock_timeout_first, "every transfer committed", None),
                             (joined, "one statement per item", None),
                             (reference[1], "a list of SQL strings", None),
                             (lambda from_id, to_id, amount: reference, "not a function", None)]:
        status, diff = q2.verdict(wrong, seed=seed)
        assert status == INCORRECT and why in diff, (wrong, diff)


LOCK_BOTH = "SELECT id FROM accounts WHERE id IN (:from_id, :to_id) {order} FOR UPDATE"


@pytest.mark.parametrize("order, why", [
    ("ORDER BY id = :from_id DESC", "opposite directions"),                # the sender's row first: one statement
    ("", "opposite directions"),                                           # stored order: it changes with updates
])
def test_nb04_q2_reads_the_order_a_single_statement_locks_its_rows_in(exercises, order, why):
    q2 = exercises[1]
    wrong = [LOCK_BOTH.format(order=order), *nb04.TRANSFER_REFERENCE[1:]]
    for seed in [0, 1, 2]:
        status, diff = q2.verdict(wrong, seed=seed)
        assert status == INCORRECT and why in diff, (order, seed, diff)


# Orders that depend on the pair: right for any two transfers (both directions lock the same row first), but not one
# order of all accounts. One statement (the higher id first when the sum is even), or two (the lower first when the
# sum is a multiple of 3).
PARITY = [LOCK_BOTH.format(order="ORDER BY CASE WHEN (:from_id + :to_id) % 2 = 0 THEN -id ELSE id END"),
          *nb04.TRANSFER_REFERENCE[1:]]
FIRST = "CASE WHEN (:from_id + :to_id) % 3 = 0 THEN least(:from_id, :to_id) ELSE greatest(:from_id, :to_id) END"
MOD3 = [f"SELECT id FROM accounts WHERE id = {FIRST} FOR UPDATE",
        f"SELECT id FROM accounts WHERE id = :from_id + :to_id - {FIRST} FOR UPDATE", *nb04.TRANSFER_REFERENCE[1:]]


# Advisory locks taken in one statement: a whole-statement interleaving never splits them, the server's pg_locks does.
ADVISORY_SENDER_FIRST = ["SELECT pg_advisory_xact_lock(:from_id), pg_advisory_xact_lock(:to_id)", *nb04.TRANSFER_STARTER]
ADVISORY_SORTED = ["SELECT pg_advisory_xact_lock(least(:from_id, :to_id)::bigint), "
                   "pg_advisory_xact_lock(greatest(:from_id, :to_id)::bigint)", *nb04.TRANSFER_STARTER]
ADVISORY_PARITY = ["SELECT pg_advisory_xact_lock(k) FROM (VALUES (least(:from_id, :to_id)), (greatest(:from_id, :to_id)))"
                   " AS v(k) ORDER BY CASE WHEN (:from_id + :to_id) % 2 = 0 THEN -k ELSE k END", *nb04.TRANSFER_STARTER]

# An advisory lock per pair of accounts gates nothing: the rows' order (here PARITY's) decides, and it is not one order.
PAIR_KEY_PARITY = ["SELECT pg_advisory_xact_lock(:from_id * 1000 + :to_id)", *PARITY]


def test_nb04_q2_rejects_a_pair_dependent_order_on_every_fresh_check(exercises):
    q2 = exercises[1]
    for check in range(8):   # fresh seeds (the next test proves the draws on 200 seeds without a server)
        status, diff = q2.verdict([PARITY, MOD3, ADVISORY_PARITY, PAIR_KEY_PARITY][check % 4])
        assert status == INCORRECT and "ring of three" in diff, (check, diff)


def test_nb04_q2_reads_the_order_of_advisory_locks_taken_in_one_statement(exercises):
    q2 = exercises[1]
    for check in range(5):   # fresh seeds: the order is read from pg_locks, so no draw can hide it
        status, diff = q2.verdict(ADVISORY_SENDER_FIRST)
        assert status == INCORRECT and "two transfers in opposite directions" in diff, (check, diff)


# Orders that depend on what is held or on the amount (rv04): each deadlocks three transfers, none is one order.
SKIP_LOCKED = [LOCK_BOTH.format(order="ORDER BY id") + " SKIP LOCKED", *nb04.TRANSFER_STARTER]
BY_AMOUNT = [LOCK_BOTH.format(order="ORDER BY CASE WHEN :amount % 2 = 0 THEN id ELSE -id END"), *nb04.TRANSFER_STARTER]
BY_XOR = [LOCK_BOTH.format(order="ORDER BY CASE WHEN ((:from_id # :to_id) & 4) = 0 THEN id ELSE -id END"),
          *nb04.TRANSFER_STARTER]   # the lower id first when a bit of the pair's xor is 0 (passed 9 checks in 13, stop 29)
SESSION_LOCKS = ["SELECT pg_advisory_lock(least(:from_id, :to_id)), pg_advisory_lock(greatest(:from_id, :to_id))",
                 *nb04.TRANSFER_STARTER]   # sorted, but never released: COMMIT ends no session-level lock


def test_nb04_q2_rejects_orders_that_depend_on_the_held_row_or_the_amount_and_session_locks_leave_nothing(exercises):
    q2 = exercises[1]
    for check in range(3):
        status, diff = q2.verdict(SKIP_LOCKED)   # each row first while the other is held: three transfers deadlock
        assert status == INCORRECT and "whatever another transfer holds" in diff, (check, diff)
        status, diff = q2.verdict(BY_AMOUNT)   # the amount's orders: a pair or a ring, whichever the probe meets first
        assert status == INCORRECT and ("opposite directions" in diff or "ring of three" in diff), (check, diff)
    status, diff = q2.verdict(BY_XOR)   # one pair never meets itself reversed: only a ring of three shows it
    assert status == INCORRECT and "ring of three" in diff, diff
    for rule in ("abs(:from_id - :to_id) > 5", "((:from_id # :to_id) & 16) = 0", "(:from_id + :to_id) % 10 < 5",
                 "abs(:from_id - :to_id) > 100", "((:from_id # :to_id) & 128) = 0", ":amount > 1000"):   # rva: far
        status, diff = q2.verdict([LOCK_BOTH.format(order=f"ORDER BY CASE WHEN {rule} THEN id ELSE -id END"),
                                   *nb04.TRANSFER_STARTER])   # rv04 (stop 30): no ring on five close ids, 8 checks in 8
        assert status == INCORRECT and any(claim in diff for claim in (   # the far probe's pair may deadlock first
            "order of the accounts' ids", "ring of three", "opposite directions")), (rule, diff)
    status, diff = q2.verdict([ADVISORY_PARITY[0].replace("% 2 = 0", "% 10 < 5"), *nb04.TRANSFER_STARTER])   # keys too
    assert status == INCORRECT and ("order of the accounts' ids" in diff or "ring of three" in diff), diff
    status, diff = q2.verdict([LOCK_BOTH.format(order="ORDER BY balance"), *nb04.TRANSFER_STARTER])   # rva: balances
    assert status == INCORRECT and "order of the accounts' ids" in diff, diff   # change, so their order is not one
    firsts = {(x, y): min(x, y) if abs(x - y) > 5 else max(x, y) for x in (1, 2, 9) for y in (1, 2, 9) if x != y}
    assert nb04.column_problem(firsts) == "column"   # no ring on three ids, but not their order
    assert nb04.column_problem({(1, 2): 1, (2, 1): 1}) is None and nb04.column_problem({(1, 2): 2, (2, 1): 2}) is None
    hashed = {1: (0, 77, 1), 2: (0, 5, 1), 3: (0, 40, 1)}   # each account's key (a hash of its id)
    lower_first = {(x, y): [(hashed[min(x, y)], hashed[max(x, y)])] for x in hashed for y in hashed if x != y}
    assert nb04.key_order_problem(lower_first) is None   # the ids' order, though not the keys'
    assert nb04.key_order_problem({**lower_first, (2, 1): [(hashed[2], hashed[1])]}) == "column"
    status, diff = q2.verdict(SESSION_LOCKS)
    assert status == INCORRECT, diff
    assert q2.verdict(nb04.TRANSFER_REFERENCE)[0] == CORRECT   # the check after it holds no lock of it


ADVISORY_IN = "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(ARRAY[:from_id, :to_id]) AS k) AS t ORDER BY {order}"


@pytest.mark.parametrize("wrong", [
    [LOCK_BOTH.format(order="ORDER BY id & 255"), *nb04.TRANSFER_STARTER],    # rvg: each passed on the five close
    [LOCK_BOTH.format(order="ORDER BY id % 100"), *nb04.TRANSFER_STARTER],    # ids; % 100 7 checks in 10, ::text
    [LOCK_BOTH.format(order="ORDER BY id::text"), *nb04.TRANSFER_STARTER],    # whenever the lowest id was < 22
    [ADVISORY_IN.format(order="k::text"), *nb04.TRANSFER_STARTER],           # rvg: 10 checks in 10
    [ADVISORY_IN.format(order="k & 255"), *nb04.TRANSFER_STARTER],
    ["SELECT pg_advisory_xact_lock(least(:from_id, :to_id) & 255), "          # rvg: keys in the ids' order, but two
     "pg_advisory_xact_lock(greatest(:from_id, :to_id) & 255)", *nb04.TRANSFER_STARTER],   # ids 256 apart share one
], ids=["rows & 255", "rows % 100", "rows text", "keys text", "keys & 255", "keys of id & 255"])
def test_nb04_q2_probes_ids_across_digit_and_bit_boundaries_rows_and_advisory_keys_alike(exercises, wrong):
    q2 = exercises[1]
    for check in range(2):   # fresh draws: the far accounts are the same whatever is drawn
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and ("order of the accounts' ids" in diff or "ring of three" in diff), (check, diff)


def _exposes(ids, rule):
    """True if `rule` (True: the lower id first) locks some three of `ids` in a cycle, x < y < z with x before y and
    y before z but z before x, or the other way round (a tournament without one has an order)."""
    from itertools import combinations

    return any(rule(x, y) == rule(y, z) != rule(x, z) for x, y, z in combinations(sorted(ids), 3))


def test_nb04_q2_ids_always_expose_every_pair_dependent_order():
    rules = nb04._non_orders()
    answers = [lambda lo, hi: (lo + hi) % 2 == 1, lambda lo, hi: (lo + hi) % 3 == 0,   # PARITY and MOD3 above
               lambda lo, hi: (lo ^ hi) & 4 == 0]   # BY_XOR
    for seed in range(200):
        ids = nb04.accounts(Draw(seed))[0]
        assert len(set(ids)) == 5 and all(_exposes(ids, rule) for rule in rules + answers), (seed, ids)
    spread = nb04.accounts(Draw(1))[0]
    assert not _exposes(sorted(spread), lambda lo, hi: True)   # one order (lowest first) is never a cycle


def test_nb04_q2_lock_orders_are_what_the_server_shows(workbook):
    engine = nb04._engine(workbook)
    ids, balances = [5, 2, 9], [100, 200, 300]
    lowest_first = nb04.lock_orders(engine, nb04.TRANSFER_REFERENCE, ids, balances, 1)
    assert lowest_first == {(x, y): min(x, y) for x in ids for y in ids if x != y}
    sender_first = nb04.lock_orders(engine, nb04.TRANSFER_STARTER, ids, balances, 1)
    assert sender_first == {(x, y): x for x in ids for y in ids if x != y}
    table = nb04.lock_orders(engine, ["LOCK TABLE accounts IN EXCLUSIVE MODE", *nb04.TRANSFER_STARTER], ids, balances, 1)
    assert set(table.values()) == {None}   # it waits for the table, holding no row: no row order to read
    assert nb04.order_problem(lowest_first) is None and nb04.order_problem(table) is None
    assert nb04.order_problem(sender_first) == "pair"
    assert nb04.order_problem({(2, 5): 2, (5, 2): 2, (5, 9): 5, (9, 5): 5, (2, 9): 9, (9, 2): 9}) == "ring"
    key = {i: (0, i, 1) for i in ids}   # pg_locks shows a bigint key as (high half, low half, 1)
    assert nb04.advisory_orders(engine, ADVISORY_SENDER_FIRST, ids, 1) == {(x, y): [(key[x], key[y])]
                                                                           for x in ids for y in ids if x != y}
    two_ints = ["SELECT pg_advisory_xact_lock(-7, greatest(:from_id, :to_id))",   # (-7, id): classid 2**32 - 7
                "SELECT pg_advisory_xact_lock(-7, least(:from_id, :to_id))", *nb04.TRANSFER_STARTER]
    assert nb04.advisory_orders(engine, two_ints, ids, 1)[2, 5] == [((2**32 - 7, 5, 2), (2**32 - 7, 2, 2))]
    for sorted_keys in [ADVISORY_SORTED, [f"SELECT pg_advisory_xact_lock({f}(:from_id, :to_id))" for f in ("least",
                                                                                                        "greatest")]]:
        assert nb04.edge_problem(nb04.advisory_orders(engine, sorted_keys, ids, 1)) is None
    assert nb04.edge_problem(nb04.advisory_orders(engine, ADVISORY_SENDER_FIRST, ids, 1)) == "pair"
    assert nb04.takes_advisory_locks(engine, ADVISORY_SORTED, ids, balances, 1)
    # rows locked sender first: a deadlock unless an exclusive advisory lock keeps the transfers of a cycle apart
    both, lower, per_pair = ({m: list(m) for m in sender_first}, {m: [min(m)] for m in sender_first},
                             {m: [m] for m in sender_first})   # (x, y): the keys of transfer x→y
    assert nb04.ungated_problem(sender_first, both) is None and nb04.ungated_problem(sender_first, lower) is None
    assert nb04.ungated_problem(sender_first, per_pair) == "pair"
    ring = {(2, 5): 2, (5, 2): 2, (5, 9): 5, (9, 5): 5, (2, 9): 9, (9, 2): 9}
    assert nb04.ungated_problem(ring, per_pair) == "ring" and nb04.ungated_problem(ring, lower) is None
    assert not nb04.takes_advisory_locks(engine, ["SELECT pg_advisory_xact_lock_shared(:from_id)",   # gates nothing
                                                  *nb04.TRANSFER_STARTER], ids, balances, 1)
    engine.dispose()


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

    def constant_backoff(engine, work, attempts=5, backoff=0.05):   # sleeps, but never longer
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in retryable or attempt == attempts:
                    raise
            time.sleep(backoff)

    def asks_for_forever(engine, work, attempts=5, backoff=0.05):   # time.sleep raises at once, never waits (rvx)
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in retryable or attempt == attempts:
                    raise
            with contextlib.suppress(OverflowError):
                time.sleep(float("inf") if attempt % 2 else 1e308)

    def not_lock_timeouts(engine, work, attempts=5, backoff=0.05):   # §7's loop, with the backoff
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in {"40001", "40P01"} or attempt == attempts:
                    raise
            time.sleep(backoff * 2 ** (attempt - 1))

    def retries_every_operational_error(engine, work, attempts=5, backoff=0.05):   # 57014 is one too
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError:
                if attempt == attempts:
                    raise
            time.sleep(backoff * 2 ** (attempt - 1))

    def retries_when(retried):   # a loop that retries the SQLSTATEs `retried(code)` accepts
        def loop(engine, work, attempts=5, backoff=0.05):
            for attempt in range(1, attempts + 1):
                try:
                    with Session(engine) as session, session.begin():
                        return work(session)
                except DBAPIError as error:
                    if not retried(getattr(error.orig, "sqlstate", None) or "") or attempt == attempts:
                        raise
                time.sleep(backoff * 2 ** (attempt - 1))
        return loop

    retries_by_class = retries_when(lambda code: code[:2] in ("40", "55"))   # the review's: 40002, 55006 retried too
    class_40_and_lock_timeouts = retries_when(lambda code: code[:2] == "40" or code == "55P03")   # rv04: passed when
    # 55000 or 55006 was drawn

    def swallows_everything_forever(engine, work, attempts=5, backoff=0.05):   # even BaseException, even ^C
        while True:
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except:  # noqa: E722
                pass

    def sleeps_holding_locks(engine, work, attempts=5, backoff=0.05):   # rvg: waits inside the failed transaction
        for attempt in range(1, attempts + 1):
            with Session(engine) as session:
                session.begin()
                try:
                    result = work(session)
                    session.commit()
                    return result
                except OperationalError as error:
                    if error.orig.sqlstate not in retryable or attempt == attempts:
                        raise
                    time.sleep(backoff * 2 ** (attempt - 1))   # the session, its locks, closed only after the wait

    def waits_then_decides(engine, work, attempts=5, backoff=0.05):   # rvg: a division by zero raised after a wait
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except DBAPIError as error:
                if attempt == attempts:
                    raise
                time.sleep(backoff * 2 ** (attempt - 1))
                if getattr(error.orig, "sqlstate", None) not in retryable:
                    raise

    def waits_after_the_last(engine, work, attempts=5, backoff=0.05):   # rvg: one more wait, then the error
        for attempt in range(1, attempts + 1):
            try:
                with Session(engine) as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if error.orig.sqlstate not in retryable:
                    raise
                time.sleep(backoff * 2 ** (attempt - 1))
                if attempt == attempts:
                    raise

    for wrong, why in [(sleeps_holding_locks, "while the loop waits to retry"),
                       (waits_then_decides, "other errors at once, as they are (division"),
                       (waits_after_the_last, "no wait after the last attempt"),
                       (unbounded, ("exactly `attempts`", "still retrying", "waits backoff")),
                       (swallows, "last attempt's own error"),
                       (retries_everything, "other errors at once, as they are (division"), (one_session, "retryable errors"),
                       (savepoints, "new transaction"), (ten_tries, "exactly `attempts`"),
                       (gives_up_with_its_own_error, "last attempt's own error"), (no_backoff, "waits backoff"),
                       (constant_backoff, "waits backoff"), (asks_for_forever, "waits backoff"),
                       (not_lock_timeouts, "retryable errors"),
                       (retries_every_operational_error, ("57014", "class 40 and 55")),   # 55006 is one too
                       (retries_by_class, "class 40 and 55"), (class_40_and_lock_timeouts, "class 40 and 55"),
                       (swallows_everything_forever, "still retrying after 1 s"),
                       ("run_with_retry", "pass your function")]:
        started = time.monotonic()
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and any(w in diff for w in ((why,) if isinstance(why, str) else why)), (wrong, diff)
        assert time.monotonic() - started < 10, wrong   # a runaway loop never holds the check for long (5 scenarios, each
        # bounded by RETRY_TIMEOUT = 1 s here; the rest is slack for a busy shared machine)
    from workbook_utils import db, urls

    parked = [t.native_id for t in threading.enumerate() if t.name == "nb04-q3-check"]
    assert parked, "the loop that swallows everything is parked on its thread, not ended"
    assert _cpu_seconds(parked, over=0.5) < 0.1, "a parked loop spins (it held a core and the GIL for the rest of the run)"
    with db.make_engine(urls.database_url("tiny")).connect() as conn:   # the parked loop holds no session
        assert conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%04%' "
                                 "AND state LIKE 'idle in transaction%'")).scalar() == 0


def test_nb04_q3_a_loop_that_leaves_sessions_open_fails_at_once_and_no_later_check_pays_for_it(exercises, workbook):
    q1, q2, q3 = exercises
    engines = len(workbook.engines) or len([workbook.engine])   # the notebook's own engine, made once

    def never_closes(engine, work, attempts=5, backoff=0.05):   # rvg: each failed attempt's Session stays open
        for attempt in range(attempts):
            session = Session(engine)
            try:
                session.begin()
                result = work(session)
                session.commit()
                return result
            except OperationalError as error:
                if error.orig.sqlstate not in ("40001", "40P01", "55P03") or attempt == attempts - 1:
                    raise
            time.sleep(backoff * 2 ** attempt)

    for check in range(2):   # rvg: passed the first check, then every later check (the references' too) failed
        started = time.monotonic()   # after 30 s with "QueuePool limit … reached"
        status, diff = q3.verdict(never_closes)
        assert status == INCORRECT and "session(s) open" in diff and q3._claim == nb04.LEAK_CLAIM, (check, diff)
        assert time.monotonic() - started < 10, check
    for exercise, right in [(q3, nb04.retry_reference), (q1, nb04.sell_reference)]:   # q2's engine is made alike
        started = time.monotonic()
        assert exercise.verdict(right) == (CORRECT, None), exercise.name
        assert time.monotonic() - started < 30, exercise.name
    with workbook.engine.connect() as conn:   # every check's engine is gone, its leaked sessions ended with it
        assert conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                 "'workbook-nb04-check%' AND datname = current_database() "
                                 "AND usename = current_user")).scalar() == 0
    assert len(workbook.engines) == engines   # nor kept by the workbook
