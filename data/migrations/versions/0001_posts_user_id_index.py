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
    # IF NOT EXISTS alone would keep an INVALID index a failed build left behind: drop that one first, concurrently.
    # Offline (--sql) there is no catalog to read: the script only builds; after a failed build, run 0001 online.
    with op.get_context().autocommit_block():
        if not context.is_offline_mode():
            invalid = op.get_bind().execute(sa.text(
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_posts_user_id')")).scalar()
            if invalid:
                op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True, if_exists=True)
