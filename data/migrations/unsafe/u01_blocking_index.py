"""UNSAFE (the failing form of 0001): a plain CREATE INDEX holds SHARE on posts for the whole build: writers wait.

Revision ID: u01
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "u01"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_user_id", "posts", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_posts_user_id", table_name="posts")
