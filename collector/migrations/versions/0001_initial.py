"""Metric windows, their origin and size buckets, the collection ledger, and the views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from collector.schema import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RAW_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WINDOW_KEY = ("org_id", "segment", "window_start")


def _key_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("segment", sa.String(128), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "metric_windows",
        *_key_columns(),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("sessions_created_count", sa.Integer(), nullable=False),
        sa.Column("sessions_created_with_playbook_count", sa.Integer(), nullable=False),
        sa.Column("sessions_created_with_search_count", sa.Integer(), nullable=False),
        sa.Column("sessions_with_merged_prs_count", sa.Integer(), nullable=False),
        sa.Column("avg_acus_per_session", sa.Float(), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("raw_body", RAW_JSON, nullable=False),
        sa.PrimaryKeyConstraint(*WINDOW_KEY, name=op.f("pk_metric_windows")),
    )
    op.create_table(
        "metric_window_origins",
        *_key_columns(),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("sessions_created_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            list(WINDOW_KEY),
            [f"metric_windows.{c}" for c in WINDOW_KEY],
            name=op.f("fk_metric_window_origins_org_id_metric_windows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(*WINDOW_KEY, "origin", name=op.f("pk_metric_window_origins")),
    )
    op.create_table(
        "metric_window_sizes",
        *_key_columns(),
        sa.Column("size", sa.String(32), nullable=False),
        sa.Column("sessions_created_count", sa.Integer(), nullable=False),
        sa.Column("sessions_with_merged_prs_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            list(WINDOW_KEY),
            [f"metric_windows.{c}" for c in WINDOW_KEY],
            name=op.f("fk_metric_window_sizes_org_id_metric_windows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(*WINDOW_KEY, "size", name=op.f("pk_metric_window_sizes")),
    )
    op.create_table(
        "collection_ledger",
        *_key_columns(),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("first_fetched_at", UTCDateTime(), nullable=True),
        sa.Column("last_fetched_at", UTCDateTime(), nullable=True),
        sa.Column("fetch_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("next_due_at", UTCDateTime(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint(*WINDOW_KEY, name=op.f("pk_collection_ledger")),
    )
    op.create_index(
        op.f("ix_collection_ledger_settled"),
        "collection_ledger",
        ["settled", "next_due_at"],
    )
    for statement in _views(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for view in ("session_metrics_daily", "session_metrics_by_size",
                 "session_metrics_by_origin", "session_metrics"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_index(op.f("ix_collection_ledger_settled"), table_name="collection_ledger")
    op.drop_table("collection_ledger")
    op.drop_table("metric_window_sizes")
    op.drop_table("metric_window_origins")
    op.drop_table("metric_windows")


def _views(dialect: str) -> list[str]:
    day = "date(w.window_start)" if dialect == "sqlite" else (
        "(w.window_start AT TIME ZONE 'UTC')::date"
    )
    return [
        """
        CREATE VIEW session_metrics AS
        SELECT w.org_id, w.segment, w.window_start, w.window_end,
               w.sessions_created_count,
               w.sessions_created_with_playbook_count,
               w.sessions_created_with_search_count,
               w.sessions_with_merged_prs_count,
               w.avg_acus_per_session,
               w.avg_acus_per_session * w.sessions_created_count AS total_acus,
               w.fetched_at,
               COALESCE(l.settled, FALSE) AS settled
        FROM metric_windows w
        LEFT JOIN collection_ledger l
          ON l.org_id = w.org_id AND l.segment = w.segment AND l.window_start = w.window_start
        """,
        """
        CREATE VIEW session_metrics_by_origin AS
        SELECT o.org_id, o.segment, o.window_start, w.window_end, o.origin,
               o.sessions_created_count
        FROM metric_window_origins o
        JOIN metric_windows w
          ON w.org_id = o.org_id AND w.segment = o.segment AND w.window_start = o.window_start
        """,
        """
        CREATE VIEW session_metrics_by_size AS
        SELECT s.org_id, s.segment, s.window_start, w.window_end, s.size,
               s.sessions_created_count, s.sessions_with_merged_prs_count
        FROM metric_window_sizes s
        JOIN metric_windows w
          ON w.org_id = s.org_id AND w.segment = s.segment AND w.window_start = s.window_start
        """,
        f"""
        CREATE VIEW session_metrics_daily AS
        SELECT w.org_id, w.segment, {day} AS day,
               SUM(w.sessions_created_count) AS sessions_created_count,
               SUM(w.sessions_created_with_playbook_count)
                   AS sessions_created_with_playbook_count,
               SUM(w.sessions_created_with_search_count) AS sessions_created_with_search_count,
               SUM(w.sessions_with_merged_prs_count) AS sessions_with_merged_prs_count,
               CASE WHEN SUM(w.sessions_created_count) > 0
                    THEN SUM(w.avg_acus_per_session * w.sessions_created_count)
                         / SUM(w.sessions_created_count)
                    ELSE 0.0 END AS avg_acus_per_session,
               SUM(w.avg_acus_per_session * w.sessions_created_count) AS total_acus,
               COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END) AS windows_collected,
               86400 / MIN(w.window_seconds) AS windows_expected,
               SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)
                   >= 86400 AS complete,
               MAX(w.fetched_at) AS fetched_at
        FROM metric_windows w
        GROUP BY w.org_id, w.segment, {day}
        """,
    ]
