"""Notebook 07's exercises: references and printed solutions pass; leaking fixtures, factories that commit or share
rows, and budgets that cannot catch the N+1 fail; starters are not attempted."""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime

import factory
import pytest
from factory.alchemy import SQLAlchemyModelFactory

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, nb07
from workbook_utils.exercises.draws import Draw
from workbook_utils.models import Order

HEADER = ("import factory\nimport pytest\nfrom sqlalchemy.orm import Session\n"
          "from workbook_utils.exercises.nb07 import OrderFactory, UserFactory\n\n")


@pytest.fixture(scope="module")
def workbook():
    from workbook_utils import setup

    workbook = setup("07")
    yield workbook
    workbook.close()


@pytest.fixture(scope="module")
def exercises(workbook):
    return nb07.load(workbook)


def _load(source, name, tmp_path):
    """A function defined in a file (so its source can be read back, as from a notebook cell)."""
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _solution(exercise):
    """The printed solution's code, without its last line (the check call)."""
    return exercise.solution_code.rsplit("\n\n", 1)[0]


def test_nb07_references_and_printed_solutions_pass(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert all(q.expected for q in exercises) and all(all(q.expected.values()) for q in exercises)
    assert q1.verdict(_load(_solution(q1), "session_fixture", tmp_path)) == (CORRECT, None)
    namespace = {}   # what the notebook's q2 cell has imported when the solution is pasted into it
    exec("from datetime import datetime, timezone\nimport factory\nfrom factory.alchemy import SQLAlchemyModelFactory\n"
         "from workbook_utils.models import Order\n"
         "from workbook_utils.exercises.nb07 import ProductFactory, UserFactory\n" + _solution(q2), namespace)
    assert q2.verdict(namespace["OrderFactory"]) == (CORRECT, None)
    assert q3.verdict(_load(_solution(q3), "test_order_history", tmp_path)) == (CORRECT, None)


def test_nb07_starters_are_not_attempted(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert q1.verdict(_load(nb07.FIXTURE_STARTER, "session_fixture", tmp_path))[0] == NOT_ATTEMPTED
    assert q3.verdict(_load(nb07.BUDGET_STARTER, "test_order_history", tmp_path))[0] == NOT_ATTEMPTED

    class OrderFactory(SQLAlchemyModelFactory):
        class Meta:
            model = Order
        user = ____
        product = ____

    assert q2.verdict(OrderFactory)[0] == NOT_ATTEMPTED


LEAKY_FIXTURES = {  # name: (fixture source, the claim its verdict must deny)
    "rollback_only": ('''
def session_fixture(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="rollback_only")
        yield session
        session.close()
        transaction.rollback()
''', "a commit inside a test survives"),
    "truncate_afterwards": ('''
def session_fixture(engine):
    session = Session(engine)
    yield session
    session.close()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE signups"))
''', "other sessions never see"),
    "commit_made_a_flush": ('''
def session_fixture(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection)
        session.commit = session.flush
        yield session
        session.close()
        transaction.rollback()
''', "a commit inside a test survives"),
}


def test_nb07_q1_tells_a_fixture_that_raises_its_error(exercises, tmp_path):
    source = "def session_fixture(engine):\n    raise RuntimeError('no database today')\n    yield\n"
    status, diff = exercises[0].verdict(_load(source, "session_fixture", tmp_path))
    assert status == INCORRECT and "RuntimeError: no database today" in diff, diff


CLASSIC_RECIPE = '''
def session_fixture(engine):
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection)
    nested = connection.begin_nested()

    @event.listens_for(session, "after_transaction_end")
    def restart_savepoint(session, ended):
        nonlocal nested
        if not nested.is_active:
            nested = connection.begin_nested()

    yield session
    session.close()
    transaction.rollback()
    connection.close()
'''


def test_nb07_q1_accepts_the_classic_recipe_whose_imports_are_at_module_level(exercises, tmp_path):
    """begin_nested + after_transaction_end, with `event` imported outside the function (as in a notebook cell)."""
    fixture = _load("from sqlalchemy import event\n" + CLASSIC_RECIPE, "session_fixture", tmp_path)
    assert exercises[0].verdict(fixture) == (CORRECT, None)


@pytest.mark.parametrize("name", LEAKY_FIXTURES)
def test_nb07_q1_rejects_fixtures_that_leak_or_undo_too_much(exercises, tmp_path, name):
    source, why = LEAKY_FIXTURES[name]
    status, diff = exercises[0].verdict(_load("from sqlalchemy import text\n" + source, "session_fixture", tmp_path))
    assert status == INCORRECT and why in diff, (name, diff)


def _order_factory(persistence="flush", product="sub", user="sub"):
    """An OrderFactory variant: persistence, and how it gets its product and user."""
    products = {"sub": factory.SubFactory(nb07.ProductFactory), "shared id": 1}
    users = {"sub": factory.SubFactory(nb07.UserFactory), "shared id": 1,
             "lazy id": factory.LazyFunction(lambda: nb07.UserFactory().id)}   # a new user even when one is given
    attributes = {"quantity": 2, "total": 20, "status": "paid", "created_at": factory.LazyFunction(lambda: datetime.now(UTC)),
                  ("product" if product == "sub" else "product_id"): products[product],
                  ("user" if user == "sub" else "user_id"): users[user]}
    meta = type("Meta", (), {"model": Order, "sqlalchemy_session_persistence": persistence})
    return type("OrderFactory", (SQLAlchemyModelFactory,), {"Meta": meta, **attributes})


@pytest.mark.parametrize("variant, why", [
    (dict(persistence=None), "has its id at once"),
    (dict(persistence="commit"), "nothing was committed"),
    (dict(product="shared id"), "IntegrityError"),   # product_id = 1 and no product: not even a valid order
    (dict(user="shared id"), "orders_user_id_fkey"),   # user_id = 1: the exercise schema's foreign key refuses it
])
def test_nb07_q2_rejects_unflushed_committing_and_shared_row_factories(exercises, variant, why):
    status, diff = exercises[1].verdict(_order_factory(**variant))
    assert status == INCORRECT and why in diff, (variant, diff)


def test_nb07_q2_rejects_a_factory_whose_id_is_set_in_python_and_never_sent(exercises):
    """rvf (stop 31): with an id from a Sequence and no persistence, the INSERT waited for the checker's next query's
    autoflush, and 'has its id at once' passed 6 checks in 6."""
    for persistence in (None, "flush"):
        meta = type("Meta", (), {"model": Order, "sqlalchemy_session_persistence": persistence})
        made = type("OrderFactory", (SQLAlchemyModelFactory,), {
            "Meta": meta, "id": factory.Sequence(lambda n: 10_000 + n), "quantity": 2, "total": 20, "status": "paid",
            "user": factory.SubFactory(nb07.UserFactory), "product": factory.SubFactory(nb07.ProductFactory),
            "user_id": factory.SelfAttribute("user.id"), "product_id": factory.SelfAttribute("product.id"),
            "created_at": factory.LazyFunction(lambda: datetime.now(UTC))})
        status, diff = exercises[1].verdict(made)
        assert (status == CORRECT) if persistence else (status == INCORRECT and "has its id at once" in diff), diff


def test_nb07_q2_accepts_a_product_made_by_a_lazy_function(exercises):
    """No SubFactory leads to ProductFactory: the check hands its session to every factory that has none."""
    lazy = type("OrderFactory", (_order_factory(),), {"product": factory.LazyFunction(lambda: nb07.ProductFactory())})
    assert exercises[1].verdict(lazy) == (CORRECT, None)
    assert nb07.ProductFactory._meta.sqlalchemy_session is None      # and takes it back afterwards


def test_nb07_q2_cuts_off_a_factory_that_sleeps(exercises, monkeypatch):
    monkeypatch.setattr(nb07, "FACTORY_SECONDS", 1)
    slow = type("OrderFactory", (_order_factory(),), {"status": factory.LazyFunction(lambda: time.sleep(600) or "paid")})
    start = time.monotonic()
    status, diff = exercises[1].verdict(slow)
    assert status == INCORRECT and "more than 1 s" in diff, diff
    assert time.monotonic() - start < 60
    assert exercises[1].verdict(nb07.OrderFactory) == (CORRECT, None)     # the schema and the session recovered


def test_nb07_q2_rejects_a_product_factory_with_a_constant_sku(exercises):
    class SameSku(nb07.ProductFactory):
        sku = "SKU-1"

    status, diff = exercises[1].verdict(type("OrderFactory", (_order_factory(),),
                                             {"product": factory.SubFactory(SameSku)}))
    assert status == INCORRECT and "IntegrityError" in diff, diff


WEAK_TESTS = {  # name: (test source, the claim its verdict must deny)
    "warm identity map": ('''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    orders = OrderFactory.create_batch(4, user=user)    # kept: their products stay loaded in the session
    with query_budget(2):
        order_history(db_session, user.id)
''', "fails on the lazy"),
    "one product": ('''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    product = OrderFactory(user=user).product
    OrderFactory.create_batch(3, user=user, product=product)
    user_id = user.id
    db_session.expire_all()
    with query_budget(2):
        order_history(db_session, user_id)
''', "fails on the lazy"),
    "budget too tight": ('''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    user_id = user.id
    OrderFactory.create_batch(4, user=user)
    db_session.expire_all()
    with query_budget(1):
        order_history(db_session, user_id)
''', "passes on the eager"),
    "not the budget": ('''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    user_id = user.id
    OrderFactory.create_batch(4, user=user)
    db_session.expire_all()
    with query_budget(100) as sent:
        order_history(db_session, user_id)
    assert len(sent) <= 2
''', "fails on the budget"),
    # Tests that fail the lazy version by themselves, with a message that looks like the budget's:
    "fails by the function's name": ('''
def test_order_history(db_session, query_budget):
    if order_history.__name__ == "order_history_lazy":
        pytest.fail("5 statements, budget 2; sent 4 times: SELECT products.id FROM products")
''', "fails on the lazy"),   # both versions are named order_history in the checker's modules
    "fails by reading the source": ('''
def test_order_history(db_session, query_budget):
    import inspect
    if "selectinload" not in inspect.getsource(order_history):
        pytest.fail("5 statements, budget 2; sent 4 times: SELECT products.id FROM products")
''', "query_budget's own failure"),
    "a budget-like message of its own": ('''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    user_id = user.id
    OrderFactory.create_batch(4, user=user)
    db_session.expire_all()
    with query_budget(100) as sent:
        order_history(db_session, user_id)
    if len(sent) > 2:
        pytest.fail(f"{len(sent)} statements, budget 2; sent 4 times: SELECT products.id FROM products")
''', "query_budget's own failure"),
    # rvf (stop 31): passed 3 checks in 3 while the two versions' docstrings differed
    "sends statements of its own by the docstring": ('''
from sqlalchemy import text

def test_order_history(db_session, query_budget):
    lazy = "lazily" in (order_history.__doc__ or "")
    with query_budget(2):
        for _ in range(3 if lazy else 0):
            db_session.execute(text("SELECT name FROM products"))
''', "fails on the lazy"),
}


@pytest.mark.parametrize("name", WEAK_TESTS)
def test_nb07_q3_rejects_budgets_that_cannot_catch_the_n_plus_one(exercises, tmp_path, name):
    source, why = WEAK_TESTS[name]
    status, diff = exercises[2].verdict(_load(source, "test_order_history", tmp_path))
    assert status == INCORRECT and why in diff, (name, diff)


def test_nb07_q3_wants_a_test_function(exercises, tmp_path):
    status, diff = exercises[2].verdict(_load("def check_it(db_session):\n    pass\n", "check_it", tmp_path))
    assert status == INCORRECT and "starts with test" in diff, diff


def test_nb07_load_gives_each_part_its_own_exercises(workbook):
    q1, q2 = nb07.load(workbook, "q1", "q2")
    assert (q1.name, q2.name, nb07.load(workbook, "q3").name) == ("q1", "q2", "q3")
    with pytest.raises(ValueError, match="not q4"):
        nb07.load(workbook, "q4")


def test_nb07_q1_and_q3_draw_their_conditions_afresh_and_a_seed_replays_them():
    drawn = [nb07.draw_signups(Draw(seed)) for seed in range(30)]
    assert len({repr(d) for d in drawn}) > 25                        # other emails, duplicates and rows on each check
    accepted = [[e for e in dict.fromkeys(d["emails"]) if e not in d["before"]] for d in drawn]
    assert all(1 <= len(d["before"]) <= 3 and len(d["emails"]) > len(a) >= 2 for d, a in zip(drawn, accepted, strict=True))
    assert nb07.draw_signups(Draw(7)) == nb07.draw_signups(Draw(7))
    starts = []
    for seed in range(30):
        draw = Draw(seed)
        nb07.draw_ids(draw)
        starts.append(draw.values["ids start at"]["users"])
        assert 1 <= draw.values["other users' orders"] <= 4
    assert len(set(starts)) > 25 and 1 not in starts


def _fixed(draw, **values):
    """A draw whose conditions are set beforehand: the fixed ones the checker used before it drew them."""
    draw.values.update(values)
    return draw


TRUNCATE_AFTER = '''
def session_fixture(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        transaction.rollback()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE signups"))      # "the table was empty before": a literal of the fixed check
'''


def test_nb07_q1_a_fixture_that_counts_on_an_empty_table_passed_fixed_conditions_and_fails_drawn_ones(
        workbook, exercises, tmp_path):
    fixture = _load("from sqlalchemy import text\n" + TRUNCATE_AFTER, "session_fixture", tmp_path)
    fixed = _fixed(Draw(1), **{"sign-ups": {"before": [], "outside": "cy@example.com",
                                           "emails": ["ada@example.com", "ada@example.com", "bob@example.com"]}})
    assert all(nb07.fixture_verdict(workbook, fixture, fixed).values())
    assert not nb07.fixture_verdict(workbook, fixture, Draw(1))[nb07.FIXTURE_CLAIMS[-1]]    # it wiped rows before it
    status, diff = exercises[0].verdict(fixture)
    assert status == INCORRECT and "seed=" in diff, diff           # and the message says how to replay it


LITERAL_USER = '''
def test_order_history(db_session, query_budget):
    user = UserFactory()
    OrderFactory.create_batch(4, user=user)
    db_session.expire_all()
    with query_budget(2):
        order_history(db_session, 2)      # the lazy module's user when ids started at 1 (the eager module ran first)
'''


def test_nb07_q3_a_test_with_a_literal_user_id_passed_fixed_conditions_and_fails_drawn_ones(workbook, exercises, tmp_path):
    test = _load(LITERAL_USER, "test_order_history", tmp_path)
    fixed = _fixed(Draw(1), **{"ids start at": dict.fromkeys(nb07.TABLES, 1), "other users' orders": 0})
    assert all(nb07.budget_verdict(workbook, test, fixed).values())
    status, diff = exercises[2].verdict(test)
    assert status == INCORRECT and "fails on the lazy" in diff, diff


def test_nb07_part_2_stands_up_the_files_part_1_shows():
    """testing_lab's CONFTEST, FACTORIES and SHARED are the strings Part 1's cells assign (its restart cell uses them)."""
    import ast

    import nbformat

    from workbook_utils import testing_lab
    from workbook_utils.config import project_root
    from workbook_utils.questions import python_of

    nb = nbformat.read(project_root() / "notebooks" / "07_testing_database_code.ipynb", as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(python_of(cell.source)).body:
            if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)   # Part 2's tuple is not
                    and node.targets[0].id in {"CONFTEST", "FACTORIES", "SHARED"}):
                found[node.targets[0].id] = eval(compile(ast.Expression(node.value), "cell", "eval"), dict(found))
    assert found == {"CONFTEST": testing_lab.CONFTEST, "FACTORIES": testing_lab.FACTORIES, "SHARED": testing_lab.SHARED}


NO_TEARDOWN = {  # the review's fixtures that never end their transaction: a later test waits on their rows' locks
    "yield": '''
def session_fixture(engine):
    connection = engine.connect()
    connection.begin()
    yield Session(bind=connection, join_transaction_mode="create_savepoint")
''',
    "return": '''
def session_fixture(engine):
    connection = engine.connect()
    connection.begin()
    return Session(bind=connection, join_transaction_mode="create_savepoint")
'''}


def test_nb07_q1_rejects_a_fixture_that_never_ends_its_transaction(exercises, tmp_path):
    status, diff = exercises[0].verdict(_load(NO_TEARDOWN["yield"], "session_fixture", tmp_path))
    assert status == INCORRECT and "an email an earlier test signed up" in diff, diff
    status, diff = exercises[0].verdict(_load(NO_TEARDOWN["return"], "session_fixture", tmp_path))
    assert status == INCORRECT and "a generator function" in diff, diff


CELL_HELPERS = {  # q1 and q3 answers that use a name their own cell defines (the review's): the whole cell runs
    "q1": '''
from sqlalchemy.orm import sessionmaker

MODE = "create_savepoint"
TestSession = sessionmaker(join_transaction_mode=MODE)

def session_fixture(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = TestSession(bind=connection)
        yield session
        session.close()
        transaction.rollback()
''',
    "q3": '''
N_ORDERS = 5

def make_orders(user):
    return OrderFactory.create_batch(N_ORDERS, user=user)

def test_order_history(db_session, query_budget):
    user = UserFactory()
    user_id = user.id
    make_orders(user)
    db_session.expire_all()
    with query_budget(2):
        order_history(db_session, user_id)
'''}


def test_nb07_q1_and_q3_run_names_their_cell_defines(exercises, tmp_path):
    assert exercises[0].verdict(_load(CELL_HELPERS["q1"], "session_fixture", tmp_path)) == (CORRECT, None)
    assert exercises[2].verdict(_load(CELL_HELPERS["q3"], "test_order_history", tmp_path)) == (CORRECT, None)


def test_nb07_q3_says_the_error_both_versions_failed_with(exercises, tmp_path):
    source = CELL_HELPERS["q3"].split("\ndef test_order_history", 1)[1].replace("make_orders", "make_some_orders")
    status, diff = exercises[2].verdict(_load("def test_order_history" + source, "test_order_history", tmp_path))
    assert status == INCORRECT and "NameError" in diff and "make_some_orders" in diff, diff


def test_nb07_q2_rejects_a_user_made_even_when_one_is_given(exercises):
    """user_id = LazyFunction(lambda: UserFactory().id): OrderFactory(user=u) uses u, but makes a stray user too."""
    status, diff = exercises[1].verdict(_order_factory(user="lazy id"))
    assert status == INCORRECT and "OrderFactory(user=u)" in diff, diff
