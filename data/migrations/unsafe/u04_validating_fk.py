"""UNSAFE (the failing form of 0004+0005): a validating FOREIGN KEY scans posts holding SHARE ROW EXCLUSIVE on both tables.

Revision ID: u04
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "u04"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint("posts_user_id_fkey", "posts", type_="foreignkey")
