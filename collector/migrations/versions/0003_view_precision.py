"""Round the computed ACU columns of the views to 6 decimal places on both backends.

`total_acus` (avg x count) and the daily weighted `avg_acus_per_session` are computed in
binary floating point, so PostgreSQL showed float noise (``183.54999999999998``) where SQLite
printed ``183.55``, and sums could differ in the last bit between backends. Both views now
round these columns to 6 decimal places, far beyond the precision of the API's values (a
few decimals), so both backends return the same double for the same data. Column names, order
and types are unchanged: the views are the public contract (docs/sql.md).

On PostgreSQL the views are replaced in place (``CREATE OR REPLACE VIEW``), which keeps any
privileges granted on them; SQLite has no such statement, so there they are dropped and
created again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Decimal places kept in the computed ACU columns (documented in docs/sql.md).
PRECISION = 6


def upgrade() -> None:
    _replace_views(rounded=True)


def downgrade() -> None:
    _replace_views(rounded=False)


def _replace_views(*, rounded: bool) -> None:
    dialect = op.get_bind().dialect.name
    for name, body in _views(dialect, rounded=rounded).items():
        if dialect == "sqlite":
            op.execute(f"DROP VIEW IF EXISTS {name}")
            op.execute(f"CREATE VIEW {name} AS {body}")
        else:
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")


def _round(expr: str, dialect: str, rounded: bool) -> str:
    """`expr` (a double) rounded to PRECISION decimal places, still a double."""
    if not rounded:
        return expr
    if dialect == "sqlite":
        return f"ROUND({expr}, {PRECISION})"
    # PostgreSQL has no ROUND(double precision, int): round as numeric, then back to double
    # so that the column keeps its type.
    return f"CAST(ROUND(CAST({expr} AS NUMERIC), {PRECISION}) AS DOUBLE PRECISION)"


def _views(dialect: str, *, rounded: bool) -> dict[str, str]:
    """The two views with computed ACU columns; `rounded=False` gives their 0001 form."""
    day = "date(w.window_start)" if dialect == "sqlite" else (
        "(w.window_start AT TIME ZONE 'UTC')::date"
    )
    total = _round("w.avg_acus_per_session * w.sessions_created_count", dialect, rounded)
    daily_avg = _round(
        "SUM(w.avg_acus_per_session * w.sessions_created_count) "
        "/ SUM(w.sessions_created_count)",
        dialect, rounded,
    )
    daily_total = _round("SUM(w.avg_acus_per_session * w.sessions_created_count)",
                         dialect, rounded)
    return {
        "session_metrics": f"""
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
        """,
        "session_metrics_daily": f"""
        SELECT w.org_id, w.segment, {day} AS day,
               SUM(w.sessions_created_count) AS sessions_created_count,
               SUM(w.sessions_created_with_playbook_count)
                   AS sessions_created_with_playbook_count,
               SUM(w.sessions_created_with_search_count) AS sessions_created_with_search_count,
               SUM(w.sessions_with_merged_prs_count) AS sessions_with_merged_prs_count,
               CASE WHEN SUM(w.sessions_created_count) > 0
                    THEN {daily_avg}
                    ELSE 0.0 END AS avg_acus_per_session,
               {daily_total} AS total_acus,
               COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END) AS windows_collected,
               86400 / MIN(w.window_seconds) AS windows_expected,
               SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)
                   >= 86400 AS complete,
               MAX(w.fetched_at) AS fetched_at
        FROM metric_windows w
        GROUP BY w.org_id, w.segment, {day}
        """,
    }
