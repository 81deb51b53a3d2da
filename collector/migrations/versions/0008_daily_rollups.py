"""Daily rollups: the daily views read tables of UTC-day totals that the writer keeps.

The daily views computed each day from its windows at every read, and the day of each
window with it, so no index served a range of days: a week across 100 orgs read every
window of those orgs. Each windowed source now has rollup tables keyed by (org_id, segment,
day): `metric_days` (sessions: the four counts, the unrounded ACU sum, and what the day's
windows cover), `metric_day_origins` and `metric_day_sizes` (sessions by origin and by
size), `pr_days` and `search_days`. They are filled here from the windows, and from then on
recomputed by the writer for every day it writes, in the same transaction
(`collector.rollup`).

`session_metrics_daily`, `pr_metrics_daily` and `search_metrics_daily` read them, with the
same columns, types and values (`devin_daily` reads those views); two new public views,
`session_metrics_daily_by_origin` and `session_metrics_daily_by_size`, read the bucket
rollups. The downgrade restores the per-window views of 0007 and drops the tables.

On PostgreSQL the views are replaced in place, which keeps the privileges granted on them;
SQLite has no such statement, so there they are dropped and created again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from collector.schema import UTCDateTime, UTCDay

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SESSIONS = ("sessions_created_count", "sessions_created_with_playbook_count",
            "sessions_created_with_search_count", "sessions_with_merged_prs_count")
PRS = ("prs_created_count", "prs_opened_count", "prs_closed_count", "prs_merged_count")
SEARCHES = ("searches_created_count",)
BY_SIZE = ("sessions_created_count", "sessions_with_merged_prs_count")
ACUS = "SUM(w.avg_acus_per_session * w.sessions_created_count)"
#: Each rollup: its table, the table it sums, its bucket column, the summed columns, and
#: whether it holds the day's coverage (a rollup of windows, not of buckets).
ROLLUPS: tuple[tuple[str, str, str | None, tuple[str, ...], bool], ...] = (
    ("metric_days", "metric_windows", None, SESSIONS, True),
    ("metric_day_origins", "metric_window_origins", "origin", ("sessions_created_count",),
     False),
    ("metric_day_sizes", "metric_window_sizes", "size", BY_SIZE, False),
    ("pr_days", "pr_windows", None, PRS, True),
    ("search_days", "search_windows", None, SEARCHES, True),
)
COVERAGE = (
    ("windows_collected", "COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END)"),
    ("windows_expected", "86400 / MIN(w.window_seconds)"),
    ("complete", "SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)"
                 " >= 86400"),
    ("fetched_at", "MAX(w.fetched_at)"),
)
DAILY = ("session_metrics_daily", "pr_metrics_daily", "search_metrics_daily")
NEW_VIEWS = ("session_metrics_daily_by_origin", "session_metrics_daily_by_size")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, _, bucket, sums, coverage in ROLLUPS:
        columns: list[sa.Column[object]] = [
            sa.Column("org_id", sa.String(128), nullable=False),
            sa.Column("segment", sa.String(128), nullable=False),
            sa.Column("day", UTCDay, nullable=False),
        ]
        if bucket is not None:
            columns.append(sa.Column(bucket, sa.String(64 if bucket == "origin" else 32),
                                     nullable=False))
        columns += [sa.Column(name, sa.BigInteger(), nullable=False) for name in sums]
        if table == "metric_days":
            columns.append(sa.Column("acus", sa.Float(), nullable=False))
        if coverage:
            columns += [sa.Column("windows_collected", sa.BigInteger(), nullable=False),
                        sa.Column("windows_expected", sa.Integer(), nullable=False),
                        sa.Column("complete", sa.Boolean(), nullable=False),
                        sa.Column("fetched_at", UTCDateTime(), nullable=False)]
        key = ["org_id", "segment", "day", *([bucket] if bucket else [])]
        op.create_table(table, *columns, sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{table}")))
        op.create_index(op.f(f"ix_{table}_segment"), table, ["segment", "day"])
        op.execute(_fill(table, dialect))
    _replace(_rollup_views(dialect))
    for name in NEW_VIEWS:
        op.execute(f"CREATE VIEW {name} AS {_rollup_views(dialect)[name]}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in NEW_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    _replace(_window_views(dialect))
    for table, *_ in reversed(ROLLUPS):
        op.drop_index(op.f(f"ix_{table}_segment"), table_name=table)
        op.drop_table(table)


def _replace(views: dict[str, str]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in DAILY:
        if sqlite:
            op.execute(f"DROP VIEW IF EXISTS {name}")
            op.execute(f"CREATE VIEW {name} AS {views[name]}")
        else:
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {views[name]}")


def _day(column: str, dialect: str) -> str:
    return f"date({column})" if dialect == "sqlite" else f"({column} AT TIME ZONE 'UTC')::date"


def _round(expr: str, dialect: str) -> str:
    """`expr` rounded to 6 decimal places, still a double (migration 0003)."""
    if dialect == "sqlite":
        return f"ROUND({expr}, 6)"
    return f"CAST(ROUND(CAST({expr} AS NUMERIC), 6) AS DOUBLE PRECISION)"


def _fill(table: str, dialect: str) -> str:
    """The rollup's rows from the whole of the table it sums."""
    (_, source, bucket, sums, coverage), = (r for r in ROLLUPS if r[0] == table)
    day = _day("w.window_start", dialect)
    group = ["w.org_id", "w.segment", day, *([f"w.{bucket}"] if bucket else [])]
    names = ["org_id", "segment", "day", *([bucket] if bucket else []), *sums]
    values = [*group, *(f"SUM(w.{c})" for c in sums)]
    if table == "metric_days":
        names.append("acus")
        values.append(ACUS)
    if coverage:
        names += [name for name, _ in COVERAGE]
        values += [expr for _, expr in COVERAGE]
    return (f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)}"
            f" FROM {source} w GROUP BY {', '.join(group)}")


def _rollup_views(dialect: str) -> dict[str, str]:
    """The daily views over the rollups: the columns, types and values of `_window_views`.
    On SQLite a value column is read through unary ``+`` (which returns its operand
    unchanged), so that, like the aggregate it replaces, it has no declared type; the key
    columns stay bare, for the primary key and the index to serve filters on them."""

    def value(*columns: str) -> str:
        plus = "+" if dialect == "sqlite" else ""
        return ", ".join(f"{plus}{c} AS {c.split('.')[1]}" for c in columns)

    coverage = value("d.windows_collected", "d.windows_expected", "d.complete")
    return {
        "session_metrics_daily": f"""
        SELECT d.org_id, d.segment, d.day, {value(*(f"d.{c}" for c in SESSIONS))},
               CASE WHEN d.sessions_created_count > 0
                    THEN {_round("d.acus / d.sessions_created_count", dialect)}
                    ELSE 0.0 END AS avg_acus_per_session,
               {_round("d.acus", dialect)} AS total_acus,
               {coverage}, {value("d.fetched_at")}
        FROM metric_days d
        """,
        "pr_metrics_daily": f"""
        SELECT d.org_id, d.segment, d.day, {value(*(f"d.{c}" for c in PRS))},
               {coverage}
        FROM pr_days d
        """,
        "search_metrics_daily": f"""
        SELECT d.org_id, d.segment, d.day, {value("d.searches_created_count")},
               {coverage}
        FROM search_days d
        """,
        "session_metrics_daily_by_origin": f"""
        SELECT d.org_id, d.segment, d.day, d.origin, {value("d.sessions_created_count")}
        FROM metric_day_origins d
        """,
        "session_metrics_daily_by_size": f"""
        SELECT d.org_id, d.segment, d.day, d.size,
               {value("d.sessions_created_count", "d.sessions_with_merged_prs_count")}
        FROM metric_day_sizes d
        """,
    }


def _window_views(dialect: str) -> dict[str, str]:
    """The daily views as 0007 left them (0003 and 0006): aggregates of the windows."""
    day = _day("w.window_start", dialect)
    coverage = """COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END) AS windows_collected,
               86400 / MIN(w.window_seconds) AS windows_expected,
               SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)
                   >= 86400 AS complete"""

    def daily(table: str, counts: Sequence[str]) -> str:
        sums = ",\n               ".join(f"SUM(w.{c}) AS {c}" for c in counts)
        return f"""
        SELECT w.org_id, w.segment, {day} AS day,
               {sums},
               {coverage}
        FROM {table} w
        GROUP BY w.org_id, w.segment, {day}
        """

    avg = _round("SUM(w.avg_acus_per_session * w.sessions_created_count) "
                 "/ SUM(w.sessions_created_count)", dialect)
    sums = ",\n               ".join(f"SUM(w.{c}) AS {c}" for c in SESSIONS)
    return {
        "session_metrics_daily": f"""
        SELECT w.org_id, w.segment, {day} AS day,
               {sums},
               CASE WHEN SUM(w.sessions_created_count) > 0
                    THEN {avg}
                    ELSE 0.0 END AS avg_acus_per_session,
               {_round(ACUS, dialect)} AS total_acus,
               {coverage},
               MAX(w.fetched_at) AS fetched_at
        FROM metric_windows w
        GROUP BY w.org_id, w.segment, {day}
        """,
        "pr_metrics_daily": daily("pr_windows", PRS),
        "search_metrics_daily": daily("search_windows", SEARCHES),
    }
