"""Expand: a nullable column the application starts writing; old rows are backfilled by 0007.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_domain", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "email_domain")
