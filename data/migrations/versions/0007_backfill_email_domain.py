"""Backfill in fixed id ranges (`id > lo AND id <= hi`) that commit one by one (few rows locked at a time, no long transaction).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = "UPDATE users SET email_domain = split_part(email, '@', 2) WHERE id > :lo AND id <= :hi AND email_domain IS NULL"


def upgrade() -> None:
    batch = int(context.config.attributes.get("backfill_batch", 1000))
    if context.is_offline_mode():  # no data to read: write the batch statement once, for review and lint
        op.execute(sa.text(BATCH).bindparams(lo=0, hi=batch))
        return
    conn = op.get_bind()
    with op.get_context().autocommit_block():  # each UPDATE below commits on its own
        max_id = conn.execute(sa.text("SELECT max(id) FROM users")).scalar() or 0
        for lo in range(0, max_id, batch):
            conn.execute(sa.text(BATCH), {"lo": lo, "hi": lo + batch})


def downgrade() -> None:
    pass  # the values are derived; 0006's downgrade drops the column
