"""Leases on ledger rows, so that several daemons sharing a database split the work.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from collector.schema import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("collection_ledger", sa.Column("lease_owner", sa.String(128), nullable=True))
    op.add_column("collection_ledger", sa.Column("lease_expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE on both backends (SQLite >= 3.35): a batch-mode table copy would
    # trip over the views that read collection_ledger.
    op.execute("ALTER TABLE collection_ledger DROP COLUMN lease_expires_at")
    op.execute("ALTER TABLE collection_ledger DROP COLUMN lease_owner")
