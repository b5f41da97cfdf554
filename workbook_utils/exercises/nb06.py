"""Exercises of notebook 06 (raw SQL vs ORM): close an injection, a window-function report, a bulk upsert.

q1 runs the learner's lookup on a made-up `customers` table (a temporary table, random ids) with real
attack strings, an address that contains a quote and one in capitals that must find nothing. q2 runs the
learner's SQL on the seeded orders and on made-up ones, reads its plan and its outermost ORDER BY. q3 syncs a
random price feed into a fresh copy of `products` and counts the statements sent (through SQLAlchemy, and through the
psycopg connection itself, reads included; each statement of a text that holds several, read by PostgreSQL's scanner;
each write the server ran, filed by a trigger), the rows written and the row versions left untouched (a new name has
a quote); then it syncs a second feed of the same shape (other products, other values) and rolls it back: the SQL
text sent must be the same, since a value pasted into it, in whatever spelling, changes it. q1's and q3's answers
run with a deadline (`bounded.run_bounded`): an answer that sleeps or loops fails the check instead of hanging it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import NOT_ATTEMPTED, Exercise, Question, WrongKind, sqltree
from .bounded import run_bounded

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..workbook import Workbook

FIND_STARTER = '''
def find_customer(conn, email):
    return conn.execute(text(f"SELECT id, name FROM customers WHERE email = '{email}'")).all()
'''
MONTHLY_STARTER = '''
MONTHLY = """
SELECT date_trunc('month', created_at) AS month, sum(total) AS revenue
FROM orders WHERE status <> 'cancelled'
GROUP BY 1 ORDER BY 1
"""
'''
SYNC_STARTER = '''
def sync_prices(session, feed):
    counts = {"inserted": 0, "updated": 0}
    for row in feed:
        product = session.scalars(select(Product).where(Product.sku == row["sku"])).first()
        if product is None:
            session.add(Product(**row))
            counts["inserted"] += 1
        elif product.price != row["price"]:
            product.price = row["price"]
            counts["updated"] += 1
        session.flush()
    return counts
'''
ATTACKS = ["' OR '1'='1", "' OR 1=1 --", "x' UNION SELECT 0, current_user --",
           "x'; DROP TABLE customers; --", "x'; DELETE FROM customers; --", "%@example.%"]
QUOTED = "o'brien@example.com"
WORDY = "orla.union@example.org"  # a real address a blacklist of SQL words (OR, UNION) would refuse
SHOUTED = "USER3@example.com"  # not an address of the table: `lower(email) = lower(:email)` would find user3's row
BOUND = ("the email travels as a bound parameter, sent apart from the SQL text (never pasted into it, not even "
         "quoted by the client)")
ORDERED = ("ordered by month: the outermost SELECT has an ORDER BY of its own, whose keys put the months in order (a "
           "window's ORDER BY, or one inside a subquery, orders nothing in the result)")
BUDGET = 1  # statements q3 may send for the whole feed
PASTED = ("the feed's values travel as bound parameters, never inside the SQL text (a second feed of the same size, "
          "with other values, sends the same SQL text)")
QUOTED_NAME = "Dara's lamp"  # a new product of q3's feed: a value pasted into the SQL text breaks on its quote
ANSWER_SECONDS = {"q1": 30, "q3": 15}  # how long an answer may run in one check: all of q1's lookups together
# (each one is stopped by a 1 s statement_timeout), q3's whole sync


@contextmanager
def _sent() -> Iterator[list[tuple[str, list]]]:
    """(statement, bound values) of every engine of the process inside the block: an answer's own engine counts too."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[tuple[str, list]] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        rows = parameters if executemany else [parameters]
        sent.append((statement, [v for row in rows for v in (row.values() if isinstance(row, dict) else row or ())]))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def _customers(conn: Connection, offset: int) -> None:
    """A made-up `customers` table for this transaction (temporary: it hides nb06.customers), ids from `offset`."""
    from sqlalchemy import text

    conn.execute(text("CREATE TEMP TABLE customers (id int PRIMARY KEY, email text UNIQUE, name text, "
                      "password_hash text) ON COMMIT DROP"))
    conn.execute(text("INSERT INTO customers SELECT :o + g, 'user' || g || '@example.com', 'Made Up ' || g, "
                      "md5(g::text) FROM generate_series(1, 12) g"), {"o": offset})
    conn.execute(text("INSERT INTO customers VALUES (:o, :e, 'Dara O''Brien', md5('o')), (:o - 1, :w, 'Orla', md5('w'))"),
                 {"o": offset, "e": QUOTED, "w": WORDY})


def find_verdict(engine: Engine, find: Callable[[Any, str], Any]) -> dict[str, bool]:
    """Legitimate lookups and attack strings against the learner's function, each in a savepoint."""
    from sqlalchemy import text

    offset = random.randint(1000, 9000)
    inputs = {"user3@example.com": [(offset + 3, "Made Up 3")], QUOTED: [(offset, "Dara O'Brien")],
              WORDY: [(offset - 1, "Orla")], "nobody@example.com": [], SHOUTED: []} | {attack: [] for attack in ATTACKS}
    got: dict[str, Any] = {}
    bound: dict[str, bool] = {}
    damaged = rendered = False
    deadline = time.monotonic() + ANSWER_SECONDS["q1"]
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL statement_timeout = '1s'"))  # 14 rows: a slow answer is stopped, not waited for
        _customers(conn, offset)
        for value in inputs:
            savepoint = conn.begin_nested()
            try:
                with _sent() as through_sa, _driver_statements(conn.connection.driver_connection) as through_driver:
                    rows = run_bounded(lambda v=value: find(conn, v), deadline - time.monotonic(),
                                       "find_customer(conn, email)", on_timeout=conn.invalidate)
                    got[value] = [tuple(r) for r in rows]
                sent = through_sa + through_driver  # a lookup straight through the driver is read too
                bound[value] = any(value in values for _, values in sent) and not any(value in s for s, _ in sent)
                present = conn.execute(text("SELECT to_regclass('pg_temp.customers')")).scalar() is not None
                damaged |= not present or conn.execute(text("SELECT count(*) FROM customers")).scalar() != 14
            except WrongKind:
                raise  # still running at the deadline: the connection is invalidated, the verdict is that
            except Exception as error:  # noqa: BLE001 - an input the lookup cannot take is the observation
                got[value], bound[value] = error, False
                rendered |= _rendering(error)
            finally:
                if not conn.invalidated:
                    savepoint.rollback()  # whatever an attack did is undone before the next input
    if rendered:  # every lookup failed because of it: the pasting is what to fix, not the rows
        raise WrongKind(f"“{BOUND}” does not hold: your statement asks SQLAlchemy to render the email into the SQL "
                        "text when it runs", claim=BOUND)
    return {"finds user3@example.com (the check queries its own made-up `customers` table: name it `customers`, "
            "not `nb06.customers`)": got["user3@example.com"] == inputs["user3@example.com"],
            f"finds {QUOTED} (a quote in a real address)": got[QUOTED] == inputs[QUOTED],
            f"finds {WORDY} (SQL words in a real address)": got[WORDY] == inputs[WORDY],
            "finds nothing for an unknown address": got["nobody@example.com"] == [],
            f"finds nothing for {SHOUTED} (the email equals `email` as written, not once lowercased)":
                got[SHOUTED] == [],
            "every attack string finds nothing (a wildcard too: the email must equal, not match)":
                all(got[a] == [] for a in ATTACKS),
            "no attack changed the table": not damaged,
            BOUND: all(bound.values())}


def _rendering(error: Exception) -> bool:
    """True if `error` is SQLAlchemy failing to render a value into the SQL text when the statement ran (a
    `bindparam(…, literal_execute=True)` it has no type to render with)."""
    from sqlalchemy.exc import CompileError, StatementError

    return (isinstance(error, StatementError) and isinstance(error.orig, CompileError)
            and "__[POSTCOMPILE_" in (error.statement or ""))


def find_reference(conn: Any, email: str) -> list:
    """Reference for q1: the value is a bound parameter."""
    from sqlalchemy import text

    return conn.execute(text("SELECT id, name FROM customers WHERE email = :email"), {"email": email}).all()


MADE_UP_ORDERS = [
    "CREATE TEMP TABLE orders (LIKE public.orders INCLUDING DEFAULTS) ON COMMIT DROP",
    # months 0, 1, 3, 4 and 6: "the month before it in the result" is not always the calendar month before
    """INSERT INTO orders (id, user_id, product_id, quantity, total, status, created_at)
       SELECT g, 1, 1, 1, round((:seed + g * 7 % 13)::numeric, 2),
              CASE WHEN g % 4 = 0 THEN 'cancelled' ELSE 'paid' END,
              timestamptz '2025-01-01 00:00+00' + (ARRAY[0, 1, 3, 4, 6])[1 + g * 9 % 5] * interval '1 month'
              + g * interval '1 hour'
       FROM generate_series(1, 40) g""",
]


def _monthly(conn: Connection, sql: str) -> list:
    """The column names, then the rows (months as dates)."""
    from sqlalchemy import text

    result = conn.execute(text(sql))
    rows = [(r[0].date() if hasattr(r[0], "date") else r[0], *r[1:]) for r in result]
    return [list(result.keys()), *rows]


def _orders_by_month(conn: Connection, sql: str) -> bool:
    """Do the outermost ORDER BY's keys put the rows in month order, no two months tied? Each key is computed beside
    the rows (a position read as that column, an output name as that column's expression), and the rows sorted by
    the keys as PostgreSQL sorts them: `ORDER BY NULL::int`, `count(*) OVER ()` or a constant under the month's name
    order nothing."""
    from functools import cmp_to_key
    from itertools import pairwise

    from pglast import ast
    from pglast.enums import SortByDir, SortByNulls
    from sqlalchemy import exc, text

    stmt = sqltree.one(sql)
    keys = list(stmt.sortClause or ())
    if not keys:
        return False
    positions = [k.node.val.ival - 1 if isinstance(k.node, ast.A_Const) and isinstance(k.node.val, ast.Integer) else None
                 for k in keys]
    computed = [k.node for k, p in zip(keys, positions, strict=True) if p is None]
    stmt.sortClause = None
    try:
        with conn.begin_nested():
            rows = conn.execute(text(_with_keys(stmt, computed))).all()
    except exc.DBAPIError:
        return False
    width = len(rows[0]) - len(computed) if rows else 0

    def values(row: tuple) -> list[Any]:
        extra = iter(row[width:])
        return [row[p] if p is not None else next(extra) for p in positions]

    def compare(a: tuple, b: tuple) -> int:
        for key, x, y in zip(keys, values(a), values(b), strict=True):
            descending = key.sortby_dir == SortByDir.SORTBY_DESC
            nulls_first = {SortByNulls.SORTBY_NULLS_FIRST: True, SortByNulls.SORTBY_NULLS_LAST: False}.get(
                key.sortby_nulls, descending)
            if (x is None) != (y is None):
                return -1 if (x is None) == nulls_first else 1
            if x is not None and x != y:
                return (-1 if x < y else 1) * (-1 if descending else 1)
        return 0

    ordered = sorted(rows, key=cmp_to_key(compare))
    return all(compare(a, b) < 0 and a[0] < b[0] for a, b in pairwise(ordered))   # the month is the first column


def _with_keys(stmt: Any, keys: list[Any]) -> str:
    """The SELECT with each key expression added as a last column (an output name read as that column's expression)."""
    from pglast import ast
    from pglast.enums import SetOperation

    targets = list(stmt.targetList or ())
    if stmt.op != SetOperation.SETOP_NONE or any(isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)
                                                  for t in targets):   # a UNION, or SELECT *: its output read from outside
        outside = [ast.ColumnRef(fields=(ast.A_Star(),))] + keys
        return f"SELECT {', '.join(sqltree.deparse(k) for k in outside)} FROM ({sqltree.deparse(stmt)}) AS workbook_q"
    names = {t.name: t.val for t in targets if t.name}

    def value(node: Any) -> Any:
        if isinstance(node, ast.ColumnRef) and len(node.fields) == 1 and getattr(node.fields[0], "sval", None) in names:
            return names[node.fields[0].sval]
        return node

    stmt.targetList = (*targets, *(ast.ResTarget(val=value(k), name=f"workbook_k{i}") for i, k in enumerate(keys)))
    return sqltree.deparse(stmt)


def monthly_verdict(engine: Engine, sql: Any, seed: int) -> dict[str, Any]:
    """The learner's query on the seeded orders, on made-up orders (totals shifted by `seed`), its plan, and its
    outermost ORDER BY, read by PostgreSQL's parser (rows that come out in order by chance are promised no order)."""
    from sqlalchemy import text

    if not isinstance(sql, str) or not sql.strip():
        raise WrongKind("MONTHLY should be your query, as a string of SQL")
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        seeded = _monthly(conn, sql)
        ordered = _orders_by_month(conn, sql)
        plan = str(conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()).replace("'", '"')
        conn.rollback()
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        for statement in MADE_UP_ORDERS:
            conn.execute(text(statement), {"seed": seed})
        made_up = _monthly(conn, sql)
        conn.rollback()
    return {ORDERED: ordered,
            "your columns, then rows, on this database": seeded,
            "your columns, then rows, on made-up orders (one month has none)": made_up,
            "the plan computes a window function (WindowAgg)": '"WindowAgg"' in plan,
            "no subquery runs once per row (SubPlan)": '"SubPlan"' not in plan}


MONTHLY_REFERENCE = """
SELECT date_trunc('month', created_at) AS month, sum(total) AS revenue,
       lag(sum(total)) OVER (ORDER BY date_trunc('month', created_at)) AS previous
FROM orders WHERE status <> 'cancelled'
GROUP BY 1 ORDER BY 1
"""


def _fresh_products(engine: Engine) -> None:
    """nb06.products: a fresh copy of the dataset's products (id sequence after the copied ids), plus 400 more;
    a statement trigger files each statement that writes it (its operation) in nb06.product_writes: an upsert or a
    MERGE files one INSERT and one UPDATE, a string of 2N statements files N of each."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))
        conn.execute(text("DROP TABLE IF EXISTS nb06.products, nb06.product_writes; "
                          "CREATE TABLE nb06.products (LIKE public.products INCLUDING ALL); "
                          "INSERT INTO nb06.products SELECT * FROM public.products; "
                          "SELECT setval(pg_get_serial_sequence('nb06.products', 'id'), max(id)) FROM nb06.products; "
                          "INSERT INTO nb06.products (sku, name, price, inventory) "  # two feeds' worth at every scale
                          "SELECT 'EXTRA-' || g, 'Extra ' || g, 10 + g % 90, g % 50 FROM generate_series(1, 400) g; "
                          "CREATE TABLE nb06.product_writes (op text); "
                          "CREATE OR REPLACE FUNCTION nb06.file_write() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$BEGIN INSERT INTO nb06.product_writes VALUES (TG_OP); RETURN NULL; END$$; "
                          "CREATE TRIGGER file_write AFTER INSERT OR UPDATE OR DELETE ON nb06.products "
                          "FOR EACH STATEMENT EXECUTE FUNCTION nb06.file_write()"))


def _feed(rng: random.Random, products: list, sizes: dict[str, int], order: list[int]) -> tuple[list[dict], list, set]:
    """A feed of `sizes` re-priced, unchanged and new products (existing ones drawn from `products`), its rows in
    `order`: (the feed, its new rows, the skus of its unchanged rows)."""
    picked = rng.sample(products, sizes["changed"] + sizes["unchanged"])
    rows = [{"sku": r.sku, "name": f"{r.name} (feed)", "inventory": r.inventory + 7,  # neither may be written
             "price": r.price + (Decimal("1.00") if i < sizes["changed"] else 0)} for i, r in enumerate(picked)]
    new = [{"sku": f"NEW-{rng.randint(0, 10**9):09d}-{i}",   # names drawn too: a feed's pasted names change its text
            "name": f"{'New' if i else QUOTED_NAME} {rng.randint(0, 10**6)}",
            "price": Decimal(rng.randint(100, 99999)).scaleb(-2), "inventory": rng.randint(0, 500)}
           for i in range(sizes["new"])]
    rows += new
    return [rows[i] for i in order], new, {r.sku for r in picked[sizes["changed"]:]}


def _run_sync(engine: Engine, sync: Callable, feed: list[dict], deadline: float, commit: bool) -> tuple[Any, list, list]:
    """The learner's sync on `feed` in a session of its own, then committed or rolled back: (what it returned, the
    statements sent through SQLAlchemy, those sent through the driver)."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        session.begin()
        session.execute(text("SET LOCAL statement_timeout = '3s'"))  # the feed takes milliseconds
        conn = session.connection()
        with _sent() as sent, _driver_statements(conn.connection.driver_connection) as driver_sent:
            counts = run_bounded(lambda: sync(session, [dict(row) for row in feed]), deadline - time.monotonic(),
                                 "sync_prices(session, feed)", on_timeout=conn.invalidate)
        session.commit() if commit else session.rollback()
    return counts, sent, driver_sent


def sync_verdict(engine: Engine, sync: Callable[[Any, list[dict]], Any]) -> dict[str, Any]:
    """A random feed of new, re-priced and unchanged products through the learner's function, counted; then, rolled
    back, a second feed of the same shape (other products, other values): the SQL text it sends must not change."""
    from sqlalchemy import text

    _fresh_products(engine)
    rng = random.Random()
    sizes = {kind: rng.randint(40, 100) for kind in ("new", "changed", "unchanged")}  # never the same counts twice
    order = rng.sample(range(sum(sizes.values())), sum(sizes.values()))
    with engine.connect() as conn:
        existing = conn.execute(text("SELECT sku, name, price, inventory FROM products ORDER BY id")).all()
    feed, new, unchanged = _feed(rng, existing, sizes, order)
    others = [r for r in existing if r.sku not in {row["sku"] for row in feed}]
    deadline = time.monotonic() + ANSWER_SECONDS["q3"]
    before = _snapshot(engine)
    counts, sent, driver_sent = _run_sync(engine, sync, feed, deadline, commit=True)
    after = _snapshot(engine)
    with engine.connect() as conn:  # writes the server ran, however they were sent, are filed by the trigger
        writes = conn.execute(text("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM product_writes "
                                   "GROUP BY op) AS per_operation")).scalar_one()
    _, sent_again, driver_sent_again = _run_sync(engine, sync, _feed(rng, others, sizes, order)[0], deadline, commit=False)
    expected = {row["sku"]: row["price"] for row in feed}
    return {"returns the counts": counts == {"inserted": sizes["new"], "updated": sizes["changed"]},
            f"at most {BUDGET} statement for the whole feed (reads through the driver count too)":
                max(_statements(sent), _statements(driver_sent), writes) <= BUDGET,
            PASTED: _texts(sent) == _texts(sent_again) and _texts(driver_sent) == _texts(driver_sent_again),
            "every price in the feed is now in the table": all(after.get(s, (0, 0))[1] == p for s, p in expected.items()),
            "new products are inserted as given": all(after.get(r["sku"], ())[1:4] == (r["price"], r["inventory"], r["name"])
                                                      for r in new),
            "existing products keep their id, name and inventory":
                all(after[s][0] == before[s][0] and after[s][2:4] == before[s][2:4] for s in before),
            "unchanged products were not rewritten (same row version)":
                all(after[s][4] == before[s][4] for s in unchanged)}


def _texts(sent: list[tuple[str, list]]) -> list[str]:
    """The SQL texts sent, without their bound values."""
    return [statement for statement, _ in sent]


def _statements(sent: list[tuple[str, list]]) -> int:
    """How many statements the texts sent hold: each text at least one, a string of several counts each of them."""
    from .sqltree import count

    return sum(max(1, count(statement)) for statement, _ in sent)


def _values(parameters: Any) -> list:
    """The bound values of one statement's parameters (a dict, a sequence, or none)."""
    if isinstance(parameters, dict):
        return list(parameters.values())
    return list(parameters or ())


def _text(query: Any, cursor: Any) -> str:
    """A query as the text the server receives: `psycopg.sql` composed (literals pasted in), bytes decoded."""
    if hasattr(query, "as_string"):
        try:
            return query.as_string(cursor)
        except Exception:  # noqa: BLE001 - a composition psycopg itself will refuse: its parts are what was meant
            return str(query)
    if isinstance(query, (bytes, bytearray, memoryview)):
        return bytes(query).decode(errors="replace")
    return str(query)


@contextmanager
def _driver_statements(driver: Any) -> Iterator[list[tuple[str, list]]]:
    """(statement, bound values) of everything sent through a cursor of this psycopg connection inside the block:
    SQLAlchemy's, and an answer's own (`driver_connection.execute(…)`, `.cursor()`, `executemany` counting each
    row, COPY, stream)."""
    sent: list[tuple[str, list]] = []
    base = driver.cursor_factory

    class Counting(base):  # type: ignore[misc, valid-type]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((_text(query, self), _values(params)))
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            params_seq = list(params_seq)
            sent.extend([(_text(query, self), _values(p)) for p in params_seq] or [(_text(query, self), [])])
            return super().executemany(query, params_seq, **kwargs)

        def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((_text(statement, self), _values(params)))
            return super().copy(statement, params, **kwargs)

        def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((_text(query, self), _values(params)))
            return super().stream(query, params, **kwargs)

    driver.cursor_factory = Counting
    try:
        yield sent
    finally:
        driver.cursor_factory = base


def _snapshot(engine: Engine) -> dict[str, tuple]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return {r.sku: (r.id, r.price, r.inventory, r.name, r.xmin) for r in
                conn.execute(text("SELECT sku, id, price, inventory, name, xmin::text AS xmin FROM products"))}


def sync_reference(session: Any, feed: list[dict]) -> dict[str, int]:
    """Reference for q3: one upsert that skips unchanged rows; xmax = 0 marks the inserted ones (any version)."""
    from sqlalchemy import literal_column
    from sqlalchemy.dialects.postgresql import insert

    from ..models import Product

    upsert = insert(Product)
    upsert = upsert.on_conflict_do_update(index_elements=[Product.sku], set_={"price": upsert.excluded.price},
                                          where=Product.price.is_distinct_from(upsert.excluded.price))
    inserted = session.scalars(upsert.returning(literal_column("xmax = 0")), feed).all()
    return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}


def _engine(wb: Workbook) -> Engine:
    """Sessions of the checks: on nb06 (ORM models via schema_translate_map, raw SQL via search_path), bounded."""
    wb.engine  # noqa: B018 - the notebook's own engine first: wb.engine is the first one made, never this one
    return wb.make_engine(connect_args={"options": "-c search_path=nb06,public -c lock_timeout=5s "
                                                   "-c statement_timeout=10s"},
                          execution_options={"schema_translate_map": {None: "nb06"}})


class _QueryExercise(Exercise):
    """An exercise whose answer is SQL text: the starter's query handed back unchanged is not attempted."""

    def verdict(self, answer: Any, seed: int | None = None) -> tuple[str, str | None]:
        if isinstance(answer, str) and " ".join(answer.split()) == " ".join(self.starter.split()):
            return NOT_ATTEMPTED, None
        return super().verdict(answer, seed=seed)


def _shift(draw: Any) -> int:
    """q2's made-up orders: their totals shifted by an amount drawn afresh for each check."""
    return draw.integer("made-up totals shifted by", 1, 50)


def _callable(answer: Any, name: str) -> Any:
    if not callable(answer):
        raise WrongKind(f"pass your function {name} itself (without calling it), not a {type(answer).__name__}")
    return answer


Q1 = Question(
    name="q1",
    text="find_customer(conn, email) returns the (id, name) rows of table customers whose email is `email`. "
         "It is built with an f-string. Make it safe: the email must travel as a bound parameter, sent apart from "
         "the SQL text. The check calls it with real addresses (one has a quote in it) and with attack strings, "
         "on a made-up customers table of its own.",
    shape="a function `find_customer(conn, email)` that returns a list of `(id, name)` rows, e.g. "
          "`[(1042, \"Dara O'Brien\")]`, or `[]` when no address is equal to `email`.",
    hint_text="§2: which version returned nothing for every attack, and still found O'Brien? Where did the "
              "value travel in the statement it sent?",
    solution_code='def find_customer(conn, email):\n'
                  '    return conn.execute(text("SELECT id, name FROM customers WHERE email = :email"),\n'
                  '                        {"email": email}).all()\n\nq1.check(find_customer)',
    discussion="Why it works: the SQL text never changes; the email travels as a bound parameter, so the server "
               "never reads it as SQL, and O'Brien's quote is just a character.\n"
               "Common wrong answers:\n"
               "- doubling the quotes (`email.replace(\"'\", \"''\")`): safe only while standard_conforming_strings "
               "is on, and the value is still inside the SQL text;\n"
               "- refusing or stripping quotes, or a blacklist of SQL words: real addresses stop working;\n"
               "- `LIKE :email`: bound, but `%` matches every address; `lower(email) = lower(:email)`: bound, but "
               "it finds an address spelled otherwise;\n"
               "- client-side binding (psycopg's `ClientCursor`, `sql.Literal`): quoted safely, but pasted into the "
               "SQL text before it is sent; server-side binding keeps the value out of the text altogether;\n"
               "- a bound parameter elsewhere in the same f-string query: the pasted part is still SQL.",
)
Q2 = Question(
    name="q2",
    text="MONTHLY is a SQL query: revenue per month (orders not cancelled, in UTC), columns month and "
         "revenue, ordered by month. Add a third column, previous: the revenue of the month before it in "
         "the result (NULL for the first), computed with a window function. The check runs it on this "
         "database and on made-up orders, and reads its plan.",
    shape="a string of SQL whose rows look like `(datetime(2025, 3, 1, …), Decimal('1234.50'), Decimal('998.00'))`: "
          "month, revenue, previous (NULL in the first row).",
    hint_text="§1's report ranked rows with rank() OVER (…). Which window function reads the row before? "
              "A window can run over an aggregate: f(sum(total)) OVER (ORDER BY …).",
    solution_code=f'MONTHLY = """{MONTHLY_REFERENCE}"""\n\nq2.check(MONTHLY)',
    discussion="Why it works: the window runs after GROUP BY, so `lag(sum(total)) OVER (ORDER BY month)` reads the "
               "previous row of the grouped result, in one pass (a WindowAgg node in the plan).\n"
               "Common wrong answers:\n"
               "- a correlated subquery for the previous month: the right rows, but it runs once per row (SubPlan);\n"
               "- a join on `month - interval '1 month'`: the calendar month before, NULL after a month with no "
               "orders;\n"
               "- `lead` instead of `lag`, or `::float` on the sum (money stops being exact);\n"
               "- no ORDER BY on the outer query: the window's sort happens to leave the rows in order, but nothing "
               "promises it.",
)
Q3 = Question(
    name="q3",
    text="sync_prices(session, feed) loads a supplier's feed (dicts with sku, name, price, inventory) into "
         "products: new skus are inserted as given; an existing product gets the feed's price (its name "
         "and inventory stay); a product whose price is unchanged must not be written at all. It returns "
         "{'inserted': …, 'updated': …}. It sends two statements per row: make it send one statement for "
         "the whole feed (a few hundred rows, different each check), its values bound, not pasted into the SQL "
         "text. The caller commits.",
    shape="a function `sync_prices(session, feed)` that returns a dict such as `{'inserted': 57, 'updated': 81}`; "
          "every statement it sends counts, through SQLAlchemy or straight through the driver, and each one in a "
          "string that holds several. The check also calls it on a second feed of the same size, other values, "
          "and rolls that back: the SQL text sent must be the same.",
    hint_text="§4's upsert did it in one statement. on_conflict_do_update takes a `where=`; which rows does "
              "RETURNING then give back, and what tells an inserted row from an updated one on any version?",
    solution_code='def sync_prices(session, feed):\n'
                  '    upsert = pg_insert(Product)\n'
                  '    upsert = upsert.on_conflict_do_update(\n'
                  '        index_elements=[Product.sku], set_={"price": upsert.excluded.price},\n'
                  '        where=Product.price.is_distinct_from(upsert.excluded.price))\n'
                  '    inserted = session.scalars(upsert.returning(literal_column("xmax = 0")), feed).all()\n'
                  '    return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}\n\n'
                  'q3.check(sync_prices)',
    discussion="Why it works: one `INSERT … ON CONFLICT (sku) DO UPDATE … WHERE price IS DISTINCT FROM "
               "excluded.price` decides each row in the database. An unchanged row fails the WHERE, so it is "
               "neither written nor returned; `xmax = 0` tells an inserted row from an updated one "
               "(`old.id IS NULL` says the same on PostgreSQL 18).\n"
               "Common wrong answers:\n"
               "- no `where=`: the right prices, but every unchanged row gets a new row version;\n"
               "- `on_conflict_do_nothing()`: existing prices never change;\n"
               "- a SELECT first to count in Python, the loop sent through the raw driver, or its statements joined "
               "with `;` into one string: more than one statement;\n"
               "- the whole feed pasted into one f-string: one statement, but the values are SQL text (a name with "
               "a quote breaks it, and a crafted one runs);\n"
               "- `set_` with name and inventory from the feed: they must stay.",
)
QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook, *names: str) -> Any:
    """The exercises of notebook 06: all three as a tuple (q1, q2, q3), the ones `names` asks for as a tuple (each
    Part loads its own: `q1, q2 = nb06.load(wb, "q1", "q2")`), or one exercise when one name is given."""
    unknown = set(names) - {"q1", "q2", "q3"}
    if unknown:
        raise ValueError(f"notebook 06 has the exercises q1, q2 and q3, not {', '.join(sorted(unknown))}")
    engine = _engine(wb)
    q1 = Q1.exercise(reference=lambda: find_verdict(engine, find_reference),
                     evaluate=lambda find: find_verdict(engine, _callable(find, "find_customer")), starter=FIND_STARTER)
    q2 = _QueryExercise(name=Q2.name, question=Q2.text, shape=Q2.shape, hint_text=Q2.hint_text,
                        solution_code=Q2.solution_code, discussion=Q2.discussion,
                        reference=lambda draw: monthly_verdict(engine, MONTHLY_REFERENCE, _shift(draw)),
                        evaluate=lambda sql, draw: monthly_verdict(engine, sql, _shift(draw)),
                        starter=MONTHLY_STARTER.split('"""')[1], drawn=True)
    q3 = Q3.exercise(reference=lambda: sync_verdict(engine, sync_reference),
                     evaluate=lambda sync: sync_verdict(engine, _callable(sync, "sync_prices")), starter=SYNC_STARTER)
    chosen = [{"q1": q1, "q2": q2, "q3": q3}[name] for name in names or ("q1", "q2", "q3")]
    return chosen[0] if len(names) == 1 else tuple(chosen)
