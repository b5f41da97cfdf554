"""UNSAFE (the failing form of 0003): a volatile default is evaluated per row, so the table is rewritten.

Revision ID: u03
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "u03"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False,
                                     server_default=sa.text("clock_timestamp()")))


def downgrade() -> None:
    op.drop_column("users", "verified_at")
