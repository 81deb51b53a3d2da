"""The other metrics: PRs, searches, active users, ACU consumption, and known organizations.

Each source's main table has the shape of `metric_windows` (the writer inserts rows
positionally): the key (``org_id``, ``segment``, ``window_start``), ``window_end``,
``window_seconds``, the source's value columns, ``fetched_at`` and ``raw_body``. Active-user
tables hold the definition's thresholds ahead of the count, and their ``segment`` holds the
definition's label, so buckets of different thresholds never collide. The views read the
ledger rows of their own source for ``settled`` / ``final``; ``devin_daily`` puts the whole-org
daily values of every UTC-day source side by side. See docs/sql.md.

The downgrade drops the views and tables and deletes the new sources' ledger rows, so that
the ledger never claims a window whose values are gone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from collector.schema import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RAW_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
KEY = ("org_id", "segment", "window_start")

#: The ledger's `source` of each new table's rows.
SOURCES = ("prs", "searches", "active_users.day", "active_users.week", "active_users.month",
           "consumption")
#: Active-user tables, with the `period` the view names them by and their ledger source.
ACTIVE_USERS = (("day", "active_users_daily"), ("week", "active_users_weekly"),
                ("month", "active_users_monthly"))
#: In dependency order: a view before the views it reads.
VIEWS = ("devin_daily", "acu_consumption_daily", "active_users", "search_metrics_daily",
         "search_metrics", "pr_metrics_daily", "pr_metrics")
TABLES = ("organizations", "acu_consumption_days", "active_users_monthly",
          "active_users_weekly", "active_users_daily", "search_windows", "pr_windows")
#: The definition `devin_daily` prefers when a day has several.
DEFAULT_MIN_SESSIONS = DEFAULT_MIN_SEARCHES = 1


def _window_table(name: str, *values: sa.Column[object]) -> None:
    op.create_table(
        name,
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("segment", sa.String(128), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        *values,
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("raw_body", RAW_JSON, nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name=op.f(f"pk_{name}")),
    )


def _int(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), nullable=False)


def _float(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def upgrade() -> None:
    _window_table("pr_windows", _int("prs_created_count"), _int("prs_opened_count"),
                  _int("prs_closed_count"), _int("prs_merged_count"))
    _window_table("search_windows", _int("searches_created_count"))
    for _, table in ACTIVE_USERS:
        _window_table(table, _int("min_sessions"), _int("min_searches"), _int("active_users"))
        op.create_index(op.f(f"ix_{table}_org_id"), table, ["org_id", "window_start"])
    _window_table(
        "acu_consumption_days",
        sa.Column("billing_date", sa.String(10), nullable=False),
        _float("acus"), _float("acus_devin"), _float("acus_cascade"), _float("acus_terminal"),
        _float("acus_review", nullable=True),
    )
    op.create_index(op.f("ix_acu_consumption_days_org_id"), "acu_consumption_days",
                    ["org_id", "billing_date"])
    op.create_table(
        "organizations",
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_organizations")),
    )
    for name, body in reversed(_views(op.get_bind().dialect.name).items()):
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for _, table in ACTIVE_USERS:
        op.drop_index(op.f(f"ix_{table}_org_id"), table_name=table)
    op.drop_index(op.f("ix_acu_consumption_days_org_id"), table_name="acu_consumption_days")
    for table in TABLES:
        op.drop_table(table)
    names = ", ".join(f"'{source}'" for source in SOURCES)
    op.execute(f"DELETE FROM collection_ledger WHERE source IN ({names})")


def _views(dialect: str) -> dict[str, str]:
    """Each view's SELECT, in the order of `VIEWS` (readers first)."""

    def day(column: str) -> str:
        """The UTC date of a timestamp: `date` on PostgreSQL, ``YYYY-MM-DD`` on SQLite."""
        return f"date({column})" if dialect == "sqlite" else f"({column} AT TIME ZONE 'UTC')::date"

    def ledger(alias: str, source: str) -> str:
        return (f"LEFT JOIN collection_ledger l ON l.source = '{source}'"
                f" AND l.org_id = {alias}.org_id AND l.segment = {alias}.segment"
                f" AND l.window_start = {alias}.window_start")

    def daily(table: str, counts: Sequence[str]) -> str:
        """Sums per org, segment and UTC day, complete as `session_metrics_daily` is."""
        sums = ",\n               ".join(f"SUM(w.{c}) AS {c}" for c in counts)
        return f"""
        SELECT w.org_id, w.segment, {day("w.window_start")} AS day,
               {sums},
               COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END) AS windows_collected,
               86400 / MIN(w.window_seconds) AS windows_expected,
               SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)
                   >= 86400 AS complete
        FROM {table} w
        GROUP BY w.org_id, w.segment, {day("w.window_start")}
        """

    prs = ("prs_created_count", "prs_opened_count", "prs_closed_count", "prs_merged_count")
    active_users = "\n        UNION ALL\n".join(
        f"""
        SELECT a.org_id, '{period}' AS period, a.window_start AS period_start,
               a.window_end AS period_end, a.active_users, a.min_sessions, a.min_searches,
               a.fetched_at, COALESCE(l.settled, FALSE) AS final
        FROM {table} a
        {ledger("a", f"active_users.{period}")}
        """
        for period, table in ACTIVE_USERS
    )
    billing_date = "c.billing_date" if dialect == "sqlite" else "CAST(c.billing_date AS DATE)"
    # Each source contributes its columns, NULL (typed, so the union's types are fixed) in the
    # others'; MAX picks the one value per org and day, and keeps NULL where a source has none.
    big, dbl = "CAST(NULL AS BIGINT)", "CAST(NULL AS DOUBLE PRECISION)"
    dau_null = "CAST(NULL AS INTEGER)"
    return {
        "devin_daily": f"""
        SELECT s.org_id, s.day,
               MAX(s.sessions) AS sessions, MAX(s.total_acus) AS total_acus,
               MAX(s.prs_created) AS prs_created, MAX(s.prs_merged) AS prs_merged,
               MAX(s.searches) AS searches, MAX(s.daily_active_users) AS daily_active_users
        FROM (
            SELECT org_id, day, CAST(sessions_created_count AS BIGINT) AS sessions,
                   total_acus, {big} AS prs_created, {big} AS prs_merged, {big} AS searches,
                   {dau_null} AS daily_active_users
            FROM session_metrics_daily WHERE segment = 'all'
            UNION ALL
            SELECT org_id, day, {big}, {dbl}, CAST(prs_created_count AS BIGINT),
                   CAST(prs_merged_count AS BIGINT), {big}, {dau_null}
            FROM pr_metrics_daily WHERE segment = 'all'
            UNION ALL
            SELECT org_id, day, {big}, {dbl}, {big}, {big},
                   CAST(searches_created_count AS BIGINT), {dau_null}
            FROM search_metrics_daily WHERE segment = 'all'
            UNION ALL
            SELECT org_id, {day("window_start")}, {big}, {dbl}, {big}, {big}, {big},
                   active_users
            FROM (
                SELECT org_id, window_start, active_users,
                       ROW_NUMBER() OVER (
                           PARTITION BY org_id, window_start
                           ORDER BY CASE WHEN min_sessions = {DEFAULT_MIN_SESSIONS}
                                          AND min_searches = {DEFAULT_MIN_SEARCHES}
                                         THEN 0 ELSE 1 END,
                                    fetched_at DESC, segment
                       ) AS choice
                FROM active_users_daily
            ) dau
            WHERE choice = 1
        ) s
        GROUP BY s.org_id, s.day
        """,
        "acu_consumption_daily": f"""
        SELECT c.org_id, {billing_date} AS billing_date,
               c.window_start AS day_start, c.window_end AS day_end,
               c.acus, c.acus_devin, c.acus_cascade, c.acus_terminal, c.acus_review,
               c.fetched_at, COALESCE(l.settled, FALSE) AS final
        FROM acu_consumption_days c
        {ledger("c", "consumption")}
        """,
        "active_users": active_users,
        "search_metrics_daily": daily("search_windows", ("searches_created_count",)),
        "search_metrics": f"""
        SELECT w.org_id, w.segment, w.window_start, w.window_end,
               w.searches_created_count, w.fetched_at, COALESCE(l.settled, FALSE) AS settled
        FROM search_windows w
        {ledger("w", "searches")}
        """,
        "pr_metrics_daily": daily("pr_windows", prs),
        "pr_metrics": f"""
        SELECT w.org_id, w.segment, w.window_start, w.window_end,
               w.prs_created_count, w.prs_opened_count, w.prs_closed_count,
               w.prs_merged_count, w.fetched_at, COALESCE(l.settled, FALSE) AS settled
        FROM pr_windows w
        {ledger("w", "prs")}
        """,
    }
