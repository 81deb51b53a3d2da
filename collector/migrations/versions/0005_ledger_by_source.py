"""The ledger is keyed by source as well: one row per source, org, segment and window.

Existing rows are the session-metrics endpoint's, so they move to ``source = 'sessions'``.
`session_metrics` is the one view that reads the ledger (for `settled`); it is recreated to
read the sessions rows only, with the same columns.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = "pk_collection_ledger"
KEY = ["org_id", "segment", "window_start"]


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS session_metrics")
    with op.batch_alter_table("collection_ledger", recreate="auto") as batch:
        batch.add_column(
            sa.Column("source", sa.String(32), nullable=False, server_default="sessions")
        )
    with op.batch_alter_table("collection_ledger", recreate="auto") as batch:
        batch.alter_column("source", existing_type=sa.String(32), server_default=None)
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, ["source", *KEY])
    _session_metrics(only_sessions=True)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS session_metrics")
    op.execute("DELETE FROM collection_ledger WHERE source <> 'sessions'")
    with op.batch_alter_table("collection_ledger", recreate="auto") as batch:
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, KEY)
    with op.batch_alter_table("collection_ledger", recreate="auto") as batch:
        batch.drop_column("source")
    _session_metrics(only_sessions=False)


def _session_metrics(*, only_sessions: bool) -> None:
    """The view as revision 0003 left it, reading the sessions rows of the ledger."""
    dialect = op.get_bind().dialect.name
    total = "w.avg_acus_per_session * w.sessions_created_count"
    total = (
        f"ROUND({total}, 6)" if dialect == "sqlite"
        else f"CAST(ROUND(CAST({total} AS NUMERIC), 6) AS DOUBLE PRECISION)"
    )
    source = " AND l.source = 'sessions'" if only_sessions else ""
    op.execute(f"""
        CREATE VIEW session_metrics AS
        SELECT w.org_id, w.segment, w.window_start, w.window_end,
               w.sessions_created_count,
               w.sessions_created_with_playbook_count,
               w.sessions_created_with_search_count,
               w.sessions_with_merged_prs_count,
               w.avg_acus_per_session,
               {total} AS total_acus,
               w.fetched_at,
               COALESCE(l.settled, FALSE) AS settled
        FROM metric_windows w
        LEFT JOIN collection_ledger l
          ON l.org_id = w.org_id AND l.segment = w.segment AND l.window_start = w.window_start
             {source}
        """)
