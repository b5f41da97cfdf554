"""Alembic environment of notebook 05 (notebook 07, planned, reuses it): revisions run against one schema,
each in its own transaction.

The contract (notebook 07, planned, will rely on it; `workbook_utils.migrations.config` builds a Config that fills it):

- config.attributes["schema"]: the schema the revisions change (the notebook's scratch copy, e.g. "nb05").
  `SET search_path` is issued at session level, not `SET LOCAL`: a migration that uses `autocommit_block()`
  commits the migration's transaction, and a SET LOCAL would be gone after that COMMIT.
- config.attributes["url"] (or the main option sqlalchemy.url): where to connect; or
  config.attributes["connection"]: an open SQLAlchemy Connection to use instead.
- config.attributes["lock_timeout"]: `SET lock_timeout` for every DDL statement (default "2s"; None = no limit,
  the unsafe default of PostgreSQL). Emitted in offline SQL too, so squawk sees it. It is a session setting, so it
  also bounds a `CREATE INDEX CONCURRENTLY` in `autocommit_block()`, whose waits for older transactions (a long
  report included) are lock waits: revision 0001 gives its build its own setting.
- config.attributes["concurrent_lock_timeout"]: the lock_timeout of 0001's concurrent build (default "0", no limit:
  while it waits it blocks no reader or writer); 0001 sets env.py's lock_timeout back afterwards.
- config.attributes["application_name"]: how the migration's session shows in pg_stat_activity.
- config.attributes["on_version_apply"]: callbacks run at the end of each revision, inside its transaction.
- version_table_schema = the schema: two notebooks never share an alembic_version row.
- transaction_per_migration=True: each revision commits on its own, so one revision's locks are never held
  while the next one runs (the default, False, runs `upgrade head` as one transaction).
- target_metadata: the head state of the tables these revisions change (autogenerate / `alembic check`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

config = context.config
SCHEMA = config.attributes.get("schema") or config.get_main_option("schema") or "public"
LOCK_TIMEOUT = config.attributes.get("lock_timeout", "2s")

target_metadata = sa.MetaData()
sa.Table(
    "users", target_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("bio", sa.Text),
    sa.Column("avatar", sa.LargeBinary),
    sa.Column("nickname", sa.Text),                                                        # 0002
    sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),    # 0003
    sa.Column("email_domain", sa.Text, nullable=False),                                    # 0006-0009
)
sa.Table(
    "posts", target_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", name="posts_user_id_fkey"), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_posts_user_id", "user_id"),                                               # 0001
)

SESSION_SETTINGS = [f"SET search_path TO {SCHEMA}"] + ([f"SET lock_timeout = '{LOCK_TIMEOUT}'"] if LOCK_TIMEOUT else [])


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Autogenerate compares our tables only (the version table sits in the same schema, which is the default)."""
    return not (type_ == "table" and name == "alembic_version")


OPTIONS = dict(target_metadata=target_metadata, version_table_schema=SCHEMA, transaction_per_migration=True,
               include_name=include_name, on_version_apply=config.attributes.get("on_version_apply", ()))


def run_migrations_offline() -> None:
    """`alembic upgrade a:b --sql`: write the SQL instead of running it (the settings come first)."""
    context.configure(url=config.attributes.get("url") or config.get_main_option("sqlalchemy.url"),
                      literal_binds=True, dialect_opts={"paramstyle": "named"}, **OPTIONS)
    for statement in SESSION_SETTINGS:
        context.execute(statement)
    context.run_migrations()


def run_migrations_online() -> None:
    """Run the revisions on a connection whose session settings survive autocommit_block()'s COMMIT."""
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
        name = config.attributes.get("application_name", "alembic")
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"application_name": name})
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: sa.Connection) -> None:
    for statement in SESSION_SETTINGS:
        connection.exec_driver_sql(statement)
    connection.commit()  # session-level settings, committed before the first revision's transaction
    connection.dialect.default_schema_name = SCHEMA
    context.configure(connection=connection, **OPTIONS)
    context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
