"""UNSAFE (the failing form of 0008+0009): SET NOT NULL scans the table holding ACCESS EXCLUSIVE.

Revision ID: u08
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "u08"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("users", "email_domain", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    op.alter_column("users", "email_domain", existing_type=sa.Text(), nullable=True)
