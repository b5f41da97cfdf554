"""Foreign key, step 2 of 2: VALIDATE scans under SHARE UPDATE EXCLUSIVE (reads and writes go on), own revision.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def downgrade() -> None:
    pass  # a validated constraint cannot be made NOT VALID again; 0004's downgrade drops it
