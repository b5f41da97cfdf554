"""Foreign key, step 1 of 2: NOT VALID checks new rows only, so the brief lock scans nothing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)


def downgrade() -> None:
    op.drop_constraint("posts_user_id_fkey", "posts", type_="foreignkey")
