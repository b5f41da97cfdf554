"""The ORM models match the seeded database, as Alembic's autogenerate comparison sees it."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table, Text

from workbook_utils import db, urls
from workbook_utils.models import Base


def _diff(metadata: MetaData) -> list:
    engine = db.make_engine(urls.database_url("tiny"))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_models_match_the_database():
    assert _diff(Base.metadata) == []


def test_the_comparison_does_see_a_difference():
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("users", changed, Column("nickname", Text), extend_existing=True)
    assert any(d[0] == "add_column" and d[3].name == "nickname" for d in _diff(changed))


def test_models_offer_awaitable_attrs_for_asyncio():
    import asyncio

    from workbook_utils.models import User

    user = User(name="x")
    user.posts = []
    assert asyncio.run(_await(user.awaitable_attrs.posts)) == []  # a loaded attribute: no IO needed


async def _await(awaitable):
    return await awaitable
