"""UNSAFE (the failing form of 0007): one UPDATE for every row, one transaction locking all of them.

Revision ID: u07
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "u07"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) WHERE email_domain IS NULL"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE users SET email_domain = NULL"))
