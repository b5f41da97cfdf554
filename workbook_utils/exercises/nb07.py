"""Exercises of notebook 07 (testing database code): a fixture that does not leak, a factory, a query budget.

q1 and q3 run the learner's fixture or test with pytest in a subprocess (`workbook_utils.suites`), in a schema
of their own; q2 runs the learner's factory in a transaction that is rolled back. The subprocess tests import
this module for the code under test and the factories, so it defines them (importing factory_boy).
Each check draws its conditions afresh (`draws.Draw`): q1 the emails signed up, the duplicates among them and the
rows committed before the run; q2 a batch size; q3 where the ids start and other users' orders already there.
"""

from __future__ import annotations

import inspect
import random
import signal
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, selectinload

from ..models import Order, Product, User
from ..testing_lab import SAVEPOINT_FIXTURE
from . import NOT_ATTEMPTED, Exercise, Question, WrongKind, ____
from .cells import standalone_source
from .draws import Draw

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..workbook import Workbook

SCHEMA = "nb07_exercises"
TABLES = ["users", "products", "orders"]
FOREIGN_KEYS = [("orders", "user_id", "users"), ("orders", "product_id", "products")]  # LIKE copies no foreign key
FACTORY_SECONDS = 20  # q2 runs the learner's factory in this process: a time.sleep in it is cut off after this


class _Base(DeclarativeBase):  # not the models' Base: notebook 07 creates Base.metadata's tables by themselves
    pass


class Signup(_Base):
    __tablename__ = "signups"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True)


def sign_up(session: Session, email: str) -> bool:
    """Register an email; False if it is taken (the request rolls back and goes on): notebook 07 §1's code."""
    session.add(Signup(email=email))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)


class UserFactory(SQLAlchemyModelFactory):
    class Meta:
        model = User
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    region = "eu"
    created_at = factory.LazyFunction(_now)


class ProductFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Product
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"

    sku = factory.Sequence(lambda n: f"SKU-{n:05}")
    name = factory.Faker("word")
    price = 10
    inventory = 100


class OrderFactory(SQLAlchemyModelFactory):
    """Reference for q2."""

    class Meta:
        model = Order
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"

    user = factory.SubFactory(UserFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 2
    total = factory.LazyAttribute(lambda order: order.product.price * order.quantity)
    status = "paid"
    created_at = factory.LazyFunction(_now)


def order_history_lazy(session: Session, user_id: int) -> list[tuple[str, int]]:
    """A user's orders: product name and quantity (each order's product loaded lazily)."""
    orders = session.scalars(select(Order).where(Order.user_id == user_id).order_by(Order.id)).all()
    return [(order.product.name, order.quantity) for order in orders]


def order_history_eager(session: Session, user_id: int) -> list[tuple[str, int]]:
    """The same, the products loaded with selectinload."""
    orders = session.scalars(select(Order).where(Order.user_id == user_id).order_by(Order.id)
                             .options(selectinload(Order.product))).all()
    return [(order.product.name, order.quantity) for order in orders]


FIXTURE_STARTER = '''
def session_fixture(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection)
        yield session
        session.close()
        transaction.rollback()
'''
BUDGET_STARTER = '''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    OrderFactory.create_batch(4, user=user)
    with query_budget(100):
        order_history(db_session, user.id)
'''

ENGINE = '''
import os

import pytest
from sqlalchemy import NullPool, create_engine, select, text
from sqlalchemy.orm import Session

@pytest.fixture(scope="session")
def engine():
    engine = create_engine(os.environ["DATABASE_URL"])
    yield engine
    engine.dispose()
'''
ISOLATION_TESTS = '''
import os

from sqlalchemy import NullPool, create_engine, select, text

from workbook_utils.exercises.nb07 import Signup, sign_up

BEFORE = {before!r}        # committed before the run: someone else's rows
EMAILS = {emails!r}        # signed up in this order; a repeated one is refused
OUTSIDE = {outside!r}

def test_1_a_commit_survives_a_later_rollback(session):
    accepted = [email for email in EMAILS if sign_up(session, email)]
    assert accepted == [email for email in dict.fromkeys(EMAILS) if email not in BEFORE]
    assert session.scalars(select(Signup.email).order_by(Signup.id)).all() == BEFORE + accepted

def test_2_other_sessions_see_nothing(session):
    assert sign_up(session, OUTSIDE)
    outside = create_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
    with outside.connect() as conn:
        seen = conn.execute(select(Signup.email)).scalars().all()
    outside.dispose()
    assert OUTSIDE not in seen

def test_3_starts_as_the_table_was(session):
    assert session.scalars(select(Signup.email).order_by(Signup.id)).all() == BEFORE

def test_4_an_email_an_earlier_test_signed_up_is_free_again(session):
    assert [sign_up(session, email) for email in [OUTSIDE, *EMAILS[:1]]] == [True, EMAILS[0] not in BEFORE]

def test_5_no_session_is_left_idle_in_transaction():
    outside = create_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
    with outside.connect() as conn:
        idle = conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = current_setting('application_name') "
            "AND datname = current_database() AND usename = current_user AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'")).scalar_one()
    outside.dispose()
    assert idle == 0
'''
NAMES = ["ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "kim", "lou", "max", "ned", "ola"]


def draw_signups(draw: Draw) -> dict[str, Any]:
    """q1's conditions: rows committed before the run, the emails signed up (some twice), the one a test commits."""
    def emails(rng: random.Random) -> dict[str, Any]:
        tag = rng.randrange(100, 1000)
        names = [f"{name}{tag}@example.com" for name in rng.sample(NAMES, 10)]
        before, fresh, outside = names[:rng.randint(1, 3)], names[3:3 + rng.randint(2, 5)], names[9]
        signups = list(fresh)
        for _ in range(rng.randint(1, 3)):  # a taken email: IntegrityError, the code rolls back and goes on
            signups.insert(rng.randint(1, len(signups)), rng.choice(before + signups[:1]))
        return {"before": before, "emails": signups, "outside": outside}

    return draw.pick("sign-ups", emails, lambda c: f"{c['emails']} with {len(c['before'])} rows committed before")


BUDGET_CONFTEST = ENGINE + '''
from collections import Counter
from contextlib import contextmanager

from sqlalchemy import event

from workbook_utils.exercises.nb07 import OrderFactory, ProductFactory, UserFactory

''' + SAVEPOINT_FIXTURE + '''
@pytest.fixture(autouse=True)
def factories_use_the_test_session(db_session):
    for f in (UserFactory, ProductFactory, OrderFactory):
        f._meta.sqlalchemy_session = db_session

@pytest.fixture
def query_budget(engine, request):
    @contextmanager
    def budget(limit):
        sent = []
        def count(conn, cursor, statement, parameters, context, executemany):
            sent.append(" ".join(statement.split()))
        event.listen(engine, "before_cursor_execute", count)
        try:
            yield sent
        finally:
            event.remove(engine, "before_cursor_execute", count)
        if len(sent) > limit:
            statement, times = Counter(sent).most_common(1)[0]
            message = f"{len(sent)} statements, budget {limit}; sent {times} times: {statement}"
            request.node.user_properties.append(("query_budget", message))   # the checker knows who failed
            pytest.fail(message, pytrace=False)
    return budget
'''
BUDGET_PROVIDED = frozenset({"pytest", "order_history", "OrderFactory", "ProductFactory", "UserFactory"})
BUDGET_HEADER = '''
import pytest

from workbook_utils.exercises.nb07 import OrderFactory, ProductFactory, UserFactory
from workbook_utils.exercises.nb07 import order_history_{version} as order_history

order_history.__name__ = order_history.__qualname__ = "order_history"   # the same name in both runs
order_history.__doc__ = "A user's orders: product name and quantity."   # and the same docstring

'''


def _fresh_schema(wb: Workbook, draw: Draw | None = None) -> None:
    """The exercises' schema, recreated: empty users, products, orders, signups; with a draw, q1's or q3's rows."""
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        db.bounded(conn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}",
                   f"another session holds {SCHEMA}: run the exercise cell again", timeout="10s")
        for t in TABLES:
            conn.execute(f"CREATE TABLE {SCHEMA}.{t} (LIKE public.{t} INCLUDING ALL)")
        for table, column, parent in FOREIGN_KEYS:
            conn.execute(f"ALTER TABLE {SCHEMA}.{table} ADD FOREIGN KEY ({column}) REFERENCES {SCHEMA}.{parent} (id)")
        conn.execute(f"CREATE TABLE {SCHEMA}.signups (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "email text NOT NULL UNIQUE)")
        if draw is not None and "sign-ups" in draw.values:
            for email in draw.values["sign-ups"]["before"]:
                conn.execute(f"INSERT INTO {SCHEMA}.signups (email) VALUES (%s)", [email])
        if draw is not None and "ids start at" in draw.values:
            _other_orders(conn, draw)


def _other_orders(conn: Any, draw: Draw) -> None:
    """q3's conditions: ids that start where the draw says, and other users' orders already in the tables."""
    for table in TABLES:
        conn.execute(f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN id RESTART WITH {draw.values['ids start at'][table]}")
    for n in range(draw.values["other users' orders"]):
        user = conn.execute(f"INSERT INTO {SCHEMA}.users (email, name, region, created_at) VALUES "
                            "(%s, 'someone', 'us', now()) RETURNING id", [f"someone{n}@example.org"]).fetchone()[0]
        product = conn.execute(f"INSERT INTO {SCHEMA}.products (sku, name, price, inventory) VALUES "
                               "(%s, 'thing', 5, 10) RETURNING id", [f"OTHER-{n}"]).fetchone()[0]
        conn.execute(f"INSERT INTO {SCHEMA}.orders (user_id, product_id, quantity, total, status, created_at) "
                     "VALUES (%s, %s, 1, 5, 'paid', now())", [user, product])


def draw_ids(draw: Draw) -> None:
    """Draw q3's conditions: where each table's ids start, and how many orders of other users are there."""
    draw.pick("ids start at", lambda rng: {t: rng.randrange(2, 1_000_000) for t in TABLES},
              lambda starts: ", ".join(f"{t} {n}" for t, n in starts.items()))
    draw.integer("other users' orders", 1, 4)


def _drop_schema(wb: Workbook) -> None:
    from .. import db

    with db.connect(wb.url.replace("+psycopg", ""), application_name=wb.app_name) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _source(function: Any, what: str) -> str:
    if not callable(function) or isinstance(function, type):
        raise WrongKind(f"pass your {what} function itself (without calling it), not a {type(function).__name__}")
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        raise WrongKind(f"the source of your {what} function cannot be read: define it in a cell") from None


def _module(header: str, function: Any, provided: frozenset[str] = frozenset()) -> str:
    """`header`, then `function` with what its cell defines for it (imports, helpers, constants: cells.py), and
    imports for the names it takes from earlier cells; `provided`: names the header defines itself."""
    code = standalone_source(function, provided)
    future = [line for line in code.splitlines() if line.startswith("from __future__ ")]  # must come first
    body = "\n".join(line for line in code.splitlines() if line not in future)
    return "\n".join(future) + "\n" + header + "\n" + body + "\n"


class _Overran(BaseException):  # not an Exception: a learner's `except Exception` cannot swallow it
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (a learner's time.sleep): SIGALRM, so in the main thread only."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def overran(signum: int, frame: Any) -> None:
        raise _Overran

    previous = signal.signal(signal.SIGALRM, overran)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(wb: Workbook, files: dict[str, str], lock_timeout: str = "5s") -> Any:
    from .. import suites

    options = f"-c search_path={SCHEMA} -c lock_timeout={lock_timeout} -c statement_timeout=30s"
    return suites.run(files, wb.url, f"{wb.app_name} tests", SCHEMA, timeout=60, env={"PGOPTIONS": options})


def _raise_errors(report: Any) -> None:
    """An answer pytest could not even run (a fixture that raises, a wrong signature) is told its error."""
    errors = report.tests.query("outcome == 'error'")
    if not errors.empty:
        raise WrongKind(f"pytest could not run {errors.test.iloc[0]} with your code: {errors.message.iloc[0]}")


FIXTURE_CLAIMS = ("a commit inside a test survives the code's later rollback",
                  "other sessions never see what a test wrote",
                  "the next test starts as the table was before the run",
                  "a later test can sign up an email an earlier test signed up (no transaction is left open)",
                  "no test's session is left idle in transaction",
                  "the rows committed before the run are still there, and nothing else")


def fixture_verdict(wb: Workbook, fixture: Callable[..., Any], draw: Draw) -> dict[str, bool]:
    """Four tests of sign_up on the learner's fixture and a look at the sessions left, under drawn sign-ups, in one
    pytest run; then what stayed."""
    _source(fixture, "fixture")
    if not inspect.isgeneratorfunction(fixture):
        raise WrongKind("session_fixture should be a generator function that yields the Session: the lines after "
                        "yield are the teardown that ends the test's transaction", claim="a fixture that yields")
    conftest = _module(ENGINE, fixture) + f"\n_fixture = pytest.fixture(name='session')({fixture.__name__})\n"
    signups = draw_signups(draw)
    _fresh_schema(wb, draw)
    try:  # a row a test left locked makes a later test wait: 2 s tell it, no correct fixture waits at all
        report = _run(wb, {"conftest.py": conftest, "test_isolation.py": ISOLATION_TESTS.format(**signups)}, "2s")
        _raise_errors(report)
        outcome = {r.test: r.outcome for r in report.tests.itertuples()}
        with wb.engine.connect() as conn:
            from sqlalchemy import text

            left = conn.execute(text(f"SELECT email FROM {SCHEMA}.signups ORDER BY id")).scalars().all()
    finally:
        _drop_schema(wb)
    passed = [outcome.get(test) == "passed" for test in ("test_1_a_commit_survives_a_later_rollback",
                                                         "test_2_other_sessions_see_nothing",
                                                         "test_3_starts_as_the_table_was",
                                                         "test_4_an_email_an_earlier_test_signed_up_is_free_again",
                                                         "test_5_no_session_is_left_idle_in_transaction")]
    return dict(zip(FIXTURE_CLAIMS, [*passed, left == signups["before"]], strict=True))


def _factories(cls: type) -> list[type]:
    """`cls` and every factory its SubFactory declarations reach."""
    found, todo = [], [cls]
    while todo:
        f = todo.pop()
        if f not in found:
            found.append(f)
            todo += [d.get_factory() for d in f._meta.declarations.values() if isinstance(d, factory.SubFactory)]
    return found


def _session_factories(cls: type) -> list[type]:
    """The factories the check hands its session: `cls`, those it reaches, and every other one without a session
    (a `LazyFunction(lambda: ProductFactory())` reaches ProductFactory without a SubFactory)."""
    found, todo = _factories(cls), list(SQLAlchemyModelFactory.__subclasses__())
    while todo:
        f = todo.pop()
        todo += f.__subclasses__()
        meta = f._meta
        if f not in found and getattr(meta, "sqlalchemy_session", None) is None and \
                getattr(meta, "sqlalchemy_session_factory", None) is None:
            found.append(f)
    return found


def _blank(cls: Any) -> bool:
    """True if the factory (or one it reaches) still has a ____ declaration."""
    return isinstance(cls, type) and issubclass(cls, SQLAlchemyModelFactory) and any(
        value is ____ for f in _factories(cls) for value in f._meta.declarations.values())


def order_factory_verdict(engine: Engine, order_factory: Any) -> dict[str, bool]:
    """Run the learner's OrderFactory on a session inside a transaction (savepoint mode), rolled back afterwards."""
    from sqlalchemy import inspect, text

    from ..measure import capture_sql

    if not (isinstance(order_factory, type) and issubclass(order_factory, SQLAlchemyModelFactory)):
        raise WrongKind("pass your factory class itself (OrderFactory), a subclass of SQLAlchemyModelFactory")
    if order_factory._meta.model is not Order:
        raise WrongKind("OrderFactory's Meta.model should be Order")
    factories = _session_factories(order_factory)
    with engine.connect() as connection, capture_sql(engine) as sql:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")

        def count(table: str) -> int:
            return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()

        try:
            for f in factories:
                f._meta.sqlalchemy_session = session
            users, products = count("users"), count("products")
            one = order_factory()
            flushed = one.id is not None and inspect(one).persistent   # an id set in Python, never sent, is pending
            batch = random.randint(2, 6)  # drawn afresh on each check: no answer can count on one batch size
            orders = [one, *order_factory.create_batch(batch)]
            new_rows = (count("users") - users, count("products") - products)
            made_each = len(orders)
            distinct = len({o.product_id for o in orders} - {None}) == made_each == len({o.user_id for o in orders} - {None})
            chosen, made = one.product, count("products")
            given = order_factory(product=chosen)
            uses_given = chosen is not None and given.product_id == chosen.id and count("products") == made
            chosen_user, made_users = one.user, count("users")
            given = order_factory(user=chosen_user)
            uses_given_user = chosen_user is not None and given.user_id == chosen_user.id and count("users") == made_users
            in_transaction = count("orders") == made_each + 2
            with engine.connect() as outside:
                unseen = outside.execute(text("SELECT count(*) FROM orders")).scalar_one() == 0
        finally:
            for f in factories:
                f._meta.sqlalchemy_session = None
            session.close()
            transaction.rollback()
    committed = any(s.lstrip().upper().startswith(("COMMIT", "RELEASE")) for s in sql.statements)
    return {"OrderFactory() has its id at once (flushed)": flushed,
            "each order gets a new user and a new product of its own": distinct and new_rows == (made_each, made_each),
            "OrderFactory(product=p) uses p and makes no other product": uses_given,
            "OrderFactory(user=u) uses u and makes no other user": uses_given_user,
            "the orders are in the test's transaction": in_transaction,
            "nothing was committed (no COMMIT, no RELEASE SAVEPOINT; other sessions see no order)":
                not committed and unseen}


BUDGET_CLAIMS = ("your test fails on the lazy order_history",
                 "it fails on the budget (query_budget's own failure), which names the products query",
                 "your test passes on the eager order_history")


def budget_verdict(wb: Workbook, test: Callable[..., Any], draw: Draw) -> dict[str, bool]:
    """The learner's test against the lazy and the eager order_history, in one pytest run, with drawn ids and other
    users' orders already in the tables."""
    _source(test, "test")
    if not test.__name__.startswith("test"):
        raise WrongKind("pytest only runs functions whose name starts with test: rename yours")
    files = {"conftest.py": BUDGET_CONFTEST}
    for version in ("lazy", "eager"):
        files[f"test_{version}.py"] = _module(BUDGET_HEADER.format(version=version), test, BUDGET_PROVIDED)
    draw_ids(draw)
    _fresh_schema(wb, draw)
    try:
        report = _run(wb, files)
    finally:
        _drop_schema(wb)
    _raise_errors(report)
    outcome = {r.module: (r.outcome, r.message) for r in report.tests.itertuples()}
    lazy, eager = outcome.get("test_lazy", ("missing", "")), outcome.get("test_eager", ("missing", ""))
    budget = report.properties.get(f"test_lazy::{test.__name__}", {}).get("query_budget", "")  # set by the fixture
    if lazy[0] == eager[0] == "failed" and lazy[1] == eager[1] and not budget:  # NameError, a wrong fixture name …
        raise WrongKind(f"your test fails on both versions, before any budget: {lazy[1]}", claim="the test runs")
    return dict(zip(BUDGET_CLAIMS, [lazy[0] == "failed", lazy[1] == f"Failed: {budget}" and "FROM products" in budget,
                                    eager[0] == "passed"], strict=True))


def fixture_reference(engine):  # noqa: ANN001, ANN201 - its source is written into a conftest
    """Reference for q1: the code's commit() and rollback() act on savepoints inside the test's transaction."""
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        transaction.rollback()


def test_order_history_reference(db_session, query_budget):  # noqa: ANN001, ANN201 - written into a test module
    """Reference for q3: several products (a lazy load each), an empty identity map, the eager version's count."""
    user = UserFactory()
    user_id = user.id
    OrderFactory.create_batch(4, user=user)
    db_session.expire_all()
    with query_budget(2):
        order_history(db_session, user_id)  # noqa: F821 - the test module imports it


class _FactoryExercise(Exercise):
    """A factory class with a ____ declaration left is not attempted (a class has no starter source to compare)."""

    def verdict(self, answer: Any) -> tuple[str, str | None]:
        return (NOT_ATTEMPTED, None) if _blank(answer) else super().verdict(answer)


# the questions -------------------------------------------------------------------------------------------------

Q1 = Question(
    name="q1",
    text="`session_fixture(engine)` below is the sheet's per-test fixture (the check registers it as the `session` "
         "fixture). Change it so that whatever the code under test does (commit, roll back after an "
         "`IntegrityError`, commit again), other sessions never see the test's rows, a commit survives a later "
         "rollback within the test, and the next test finds the table as it was before the run. The check runs §1's "
         "`sign_up` tests (and one more) with pytest, on emails and rows it draws afresh each time.",
    shape="a generator function `session_fixture(engine)` that yields a `Session`; imports at the top of the "
          "cell are fine.",
    hint_text="Keep the outer transaction the fixture rolls back; tell the Session what to do with its own "
              "commit() and rollback() when it is bound to a connection that is already in a transaction.",
    solution_code="def session_fixture(engine):\n"
                  "    with engine.connect() as connection:\n"
                  "        transaction = connection.begin()\n"
                  "        session = Session(bind=connection, join_transaction_mode=\"create_savepoint\")\n"
                  "        yield session\n"
                  "        session.close()\n"
                  "        transaction.rollback()\n\nq1.check(session_fixture)",
    discussion="Why it works: in `create_savepoint` mode every `commit()` or `rollback()` of the code acts on a "
               "SAVEPOINT inside the fixture's transaction, and the fixture rolls that transaction back. The "
               "older recipe (`connection.begin_nested()` plus an `after_transaction_end` listener that reopens the "
               "savepoint) passes too.\n"
               "Common wrong answers:\n"
               "- the default mode (`conditional_savepoint`) or `rollback_only`: the code's `rollback()` ends the "
               "test's transaction, and its next `commit()` commits for real;\n"
               "- `TRUNCATE` after the test: other sessions see the rows while it runs, and it also wipes rows "
               "committed before the run;\n"
               "- replacing `session.commit` by `flush`: a later rollback undoes what was \"committed\";\n"
               "- nothing after `yield` (or `return` instead of `yield`): the test's transaction stays open, its "
               "connection idle in transaction, and a later test that signs up the same email waits on its lock.",
)
Q2 = Question(
    name="q2",
    text="Complete `OrderFactory` (orders reference a user and a product; `products.sku` is unique) so that each "
         "order gets a new user and a new product unless given one, has its id right after `OrderFactory()`, and "
         "nothing is ever committed. `ProductFactory` and `UserFactory` are §2's.",
    shape="a `SQLAlchemyModelFactory` subclass `OrderFactory` with `Meta.model = Order`; the check hands every "
          "factory the test's session.",
    hint_text="factory.SubFactory(...) for each related row; and one more Meta option decides whether "
              "create() sends the INSERT (the id comes from the database).",
    solution_code="class OrderFactory(SQLAlchemyModelFactory):\n"
                  "    class Meta:\n"
                  "        model = Order\n"
                  "        sqlalchemy_session_persistence = \"flush\"\n"
                  "    user = factory.SubFactory(UserFactory)\n"
                  "    product = factory.SubFactory(ProductFactory)\n"
                  "    quantity = 2\n"
                  "    total = factory.LazyAttribute(lambda order: order.product.price * order.quantity)\n"
                  "    status = \"paid\"\n"
                  "    created_at = factory.LazyFunction(lambda: datetime.now(timezone.utc))\n\n"
                  "q2.check(OrderFactory)",
    discussion="Why it works: `SubFactory` makes a new related row for each order unless the caller passes one, "
               "and `sqlalchemy_session_persistence = \"flush\"` sends the INSERT at once without committing. "
               "`product = factory.LazyFunction(lambda: ProductFactory())` passes too.\n"
               "Common wrong answers:\n"
               "- no persistence option: the order is only added to the session and has no id yet;\n"
               "- `\"commit\"`: the rows outlive the test;\n"
               "- `product_id = 1` or `user_id = 1`: every order shares one row, or the foreign key refuses it;\n"
               "- `user_id = factory.LazyFunction(lambda: UserFactory().id)`: `OrderFactory(user=u)` uses `u` but "
               "still makes a user nobody asked for.",
)
Q3 = Question(
    name="q3",
    text="`order_history(session, user_id)` (printed above) lazy-loads each order's product. Change "
         "`test_order_history` so that it fails on that version, with the budget's message, and passes on the "
         "version that uses `selectinload(Order.product)` (2 statements). The check runs your test with pytest "
         "against both, in tables where ids start at a drawn number and other users' orders are already there; "
         "`db_session`, `query_budget` and the factories are §2-§3's (`OrderFactory` is q2's reference answer, "
         "`nb07.OrderFactory`).",
    shape="a test function `test_order_history(db_session, query_budget)` that calls `order_history(db_session, "
          "user_id)` inside `with query_budget(n):`.",
    hint_text="What does the lazy version send for 4 orders of 4 products, and for 4 orders of one product? "
              "And what did §3's warm identity map do to the lazy page?",
    solution_code="def test_order_history(db_session, query_budget):\n"
                  "    user = UserFactory()\n"
                  "    user_id = user.id\n"
                  "    OrderFactory.create_batch(4, user=user)     # four products: four lazy loads\n"
                  "    db_session.expire_all()                     # as a new request would start\n"
                  "    with query_budget(2):\n"
                  "        order_history(db_session, user_id)\n\nq3.check(test_order_history)",
    discussion="Why it works: four orders of four products make the lazy version send 1 + 4 statements, the eager "
               "one 2; `expire_all()` empties the identity map the factories filled, as a new request starts.\n"
               "Common wrong answers:\n"
               "- no `expire_all()`: the products are already loaded, the lazy version sends 1 statement and passes;\n"
               "- one product for every order: one lazy load, within the budget;\n"
               "- a budget of 1: the eager version fails too.",
)
QUESTIONS = (Q1, Q2, Q3)


def load(wb: Workbook, *names: str) -> Any:
    """The exercises of notebook 07 bound to this notebook's database: all three as a tuple (q1, q2, q3), the ones
    `names` asks for as a tuple (each Part loads its own: `q1, q2 = nb07.load(wb, "q1", "q2")`), or one exercise
    when one name is given (`q3 = nb07.load(wb, "q3")`)."""
    unknown = set(names) - {"q1", "q2", "q3"}
    if unknown:
        raise ValueError(f"notebook 07 has the exercises q1, q2 and q3, not {', '.join(sorted(unknown))}")
    engine = wb.make_engine(connect_args={"options": f"-c search_path={SCHEMA} -c lock_timeout=5s "
                                                     "-c statement_timeout=10s"})

    def order_factory_check(answer: Any) -> dict[str, bool]:
        _fresh_schema(wb)
        try:
            with _time_limit(FACTORY_SECONDS):
                return order_factory_verdict(engine, answer)
        except _Overran:
            raise WrongKind(f"your factory ran for more than {FACTORY_SECONDS} s (a time.sleep?): a factory makes its "
                            "rows at once") from None
        finally:
            _drop_schema(wb)

    q1 = Q1.exercise(reference=lambda draw: dict.fromkeys(FIXTURE_CLAIMS, True), drawn=True,  # a test runs the reference
                     evaluate=lambda fixture, draw: fixture_verdict(wb, fixture, draw), starter=FIXTURE_STARTER)
    q2 = _FactoryExercise(name=Q2.name, question=Q2.text, shape=Q2.shape, hint_text=Q2.hint_text,
                          solution_code=Q2.solution_code, discussion=Q2.discussion,
                          reference=lambda: order_factory_check(OrderFactory), evaluate=order_factory_check)
    q3 = Q3.exercise(reference=lambda draw: dict.fromkeys(BUDGET_CLAIMS, True), drawn=True,
                     evaluate=lambda test, draw: budget_verdict(wb, test, draw), starter=BUDGET_STARTER)
    chosen = [{"q1": q1, "q2": q2, "q3": q3}[name] for name in names or ("q1", "q2", "q3")]
    return chosen[0] if len(names) == 1 else tuple(chosen)
