"""NOT NULL, step 2 of 2: VALIDATE (scan, weak lock), then SET NOT NULL skips its scan, then drop the CHECK.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users VALIDATE CONSTRAINT users_email_domain_not_null")
    op.alter_column("users", "email_domain", existing_type=sa.Text(), nullable=False)  # proven by the CHECK
    op.drop_constraint("users_email_domain_not_null", "users", type_="check")


def downgrade() -> None:
    op.create_check_constraint("users_email_domain_not_null", "users", "email_domain IS NOT NULL")
    op.alter_column("users", "email_domain", existing_type=sa.Text(), nullable=True)
