"""UNSAFE (the original sheet's form): CONCURRENTLY inside Alembic's transaction fails at once.

Revision ID: u01c
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "u01c"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX CONCURRENTLY ix_posts_user_id ON posts (user_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_posts_user_id")
