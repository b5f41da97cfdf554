"""NOT NULL, step 1 of 2: a CHECK ... NOT VALID (brief lock, no scan); new rows are checked from now on.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_check_constraint("users_email_domain_not_null", "users", "email_domain IS NOT NULL",
                               postgresql_not_valid=True)


def downgrade() -> None:
    op.drop_constraint("users_email_domain_not_null", "users", type_="check")
