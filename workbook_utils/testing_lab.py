"""Notebook 07's test bed: empty copies of the dataset's tables in schema nb07, and pytest runs against them.

Part 1 of the notebook shows these files in its cells; Part 2's first cell stands the same test bed up after a
kernel restart (`stand_up`). A test holds the notebook's cells and these strings equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .suites import Report
    from .workbook import Workbook

TABLES = ["users", "posts", "comments", "products", "orders"]
FOREIGN_KEYS = [("posts", "user_id", "users"), ("comments", "post_id", "posts"), ("comments", "user_id", "users"),
                ("orders", "user_id", "users"), ("orders", "product_id", "products")]
SIGNUPS = "signups (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE)"

CONFTEST = """
import os

import pytest
from sqlalchemy import create_engine

@pytest.fixture(scope="session")
def engine():
    engine = create_engine(os.environ["DATABASE_URL"])   # libpq adds PGAPPNAME and PGOPTIONS
    yield engine
    engine.dispose()
"""

FACTORIES = """
from datetime import datetime, timezone

import factory
from factory.alchemy import SQLAlchemyModelFactory

from workbook_utils.models import Comment, Post, Product, User

now = factory.LazyFunction(lambda: datetime.now(timezone.utc))

class UserFactory(SQLAlchemyModelFactory):
    class Meta:
        model = User
        sqlalchemy_session = None                  # set for each test by conftest.py
        sqlalchemy_session_persistence = "flush"   # INSERT now: user.id is set; nothing is committed
    email = factory.Sequence(lambda n: f"user{n}@example.com")   # a UNIQUE column
    name = factory.Faker("name")
    region = "eu"
    created_at = now

class PostFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Post
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"
    user = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"post {n}")
    body = "…"
    created_at = now

class CommentFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Comment
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"
    post = factory.SubFactory(PostFactory)
    user = factory.SubFactory(UserFactory)
    body = "nice"
    created_at = now

class ProductFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Product
        sqlalchemy_session = None
        sqlalchemy_session_persistence = "flush"
    sku = factory.Sequence(lambda n: f"SKU-{n:05}")
    name = factory.Faker("word")
    price = 10
    inventory = 100
"""

# §1's fixed fixture: the test's session joins an outer transaction through savepoints (07's exercises use it too)
SAVEPOINT_FIXTURE = """@pytest.fixture
def db_session(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        transaction.rollback()
"""

SHARED = CONFTEST + """
from sqlalchemy.orm import Session

from factories import CommentFactory, PostFactory, ProductFactory, UserFactory

""" + SAVEPOINT_FIXTURE + """
@pytest.fixture(autouse=True)
def factories_use_the_test_session(db_session):
    for factory in (UserFactory, PostFactory, CommentFactory, ProductFactory):
        factory._meta.sqlalchemy_session = db_session
"""


def make_tables(wb: Workbook) -> None:
    """Empty copies of TABLES and a `signups` table in the notebook's schema, with the foreign keys LIKE never copies."""
    from sqlalchemy import text

    s = wb.schema
    with wb.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {s}.signups, " + ", ".join(f"{s}.{t}" for t in TABLES)))
        for t in TABLES:
            conn.execute(text(f"CREATE TABLE {s}.{t} (LIKE public.{t} INCLUDING ALL)"))  # empty; ids by identity
        conn.execute(text(f"CREATE TABLE {s}.{SIGNUPS}"))
        for table, column, parent in FOREIGN_KEYS:  # LIKE … INCLUDING ALL copies none of them
            conn.execute(text(f"ALTER TABLE {s}.{table} ADD FOREIGN KEY ({column}) REFERENCES {s}.{parent} (id)"))


def stand_up(wb: Workbook) -> Callable[..., Report]:
    """Make the tables; return `run_tests(files, order=None)`: pytest on `files`, as `workbook-nb07 tests`, in nb07."""
    from . import suites

    make_tables(wb)

    def run_tests(files: dict[str, str], order: list[str] | None = None, schema: str | None = None,
                  env: dict[str, str] | None = None) -> Report:
        """Run these test files with pytest, as this notebook's `workbook-nb07 tests` sessions, in schema nb07
        (or `schema`), with `env` added to their environment."""
        return suites.run(files, wb.url, f"{wb.app_name} tests", schema or wb.schema, order, env=env)

    return run_tests
