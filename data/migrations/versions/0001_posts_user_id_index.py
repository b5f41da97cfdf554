"""Index posts.user_id without blocking writers: CREATE INDEX CONCURRENTLY outside the transaction.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CONCURRENTLY cannot run inside a transaction block: autocommit_block() commits Alembic's transaction first.
    # IF NOT EXISTS alone would keep an INVALID index a failed build left behind: drop that one first.
    with op.get_context().autocommit_block():
        op.execute("""DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('ix_posts_user_id') AND NOT indisvalid)
            THEN DROP INDEX ix_posts_user_id; END IF; END $$""")
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True, if_exists=True)
