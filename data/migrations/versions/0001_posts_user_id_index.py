"""Index posts.user_id without blocking writers: CREATE INDEX CONCURRENTLY outside the transaction.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CONCURRENTLY cannot run inside a transaction block: autocommit_block() commits Alembic's transaction first.
    # The build waits for every older transaction of the database (a long report too), and those waits are lock
    # waits: under env.py's lock_timeout a report longer than it would cancel the build and leave an INVALID index.
    # The build gets its own setting ("concurrent_lock_timeout", no limit by default: while it waits it blocks no
    # reader or writer), and env.py's setting comes back afterwards for the revisions that follow.
    build_timeout = context.config.attributes.get("concurrent_lock_timeout", "0")
    session_timeout = context.config.attributes.get("lock_timeout", "2s")  # env.py's default
    with op.get_context().autocommit_block():
        op.execute(f"SET lock_timeout = '{build_timeout}'")
        # IF NOT EXISTS alone would keep an INVALID index a failed build left behind: drop that one first.
        # Offline (--sql) there is no catalog to read: the script only builds; after a failed build, run 0001 online.
        if not context.is_offline_mode():
            invalid = op.get_bind().execute(sa.text(
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_posts_user_id')")).scalar()
            if invalid:
                op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)
        op.execute(f"SET lock_timeout = '{session_timeout}'" if session_timeout else "SET lock_timeout = DEFAULT")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True, if_exists=True)
