"""Reading a time range across organizations: an index per windowed table, and bucket views
the planner can read without their windows.

Each windowed table is keyed by (org_id, segment, window_start), which serves one org's time
range but not a range across orgs: "sessions by origin this week, all orgs" (docs/sql.md)
read the whole of `metric_window_origins`. Each now has an index on (segment, window_start),
so a query that filters the segment and a time range, whatever its orgs, reads that range.

`session_metrics_by_origin` and `session_metrics_by_size` joined their bucket rows to their
window only for `window_end`, and paid a lookup per bucket row even when `window_end` was
not asked for. They now use a LEFT JOIN, which PostgreSQL drops when the query does not
read `window_end` (the window is unique on the join columns). The rows are the same: every
bucket row has its window (a foreign key, ON DELETE CASCADE). Columns, names and types are
unchanged. Measured in bench/queries.py (docs/benchmarks.md).

On PostgreSQL the views are replaced in place, which keeps the privileges granted on them;
SQLite has no such statement, so there they are dropped and created again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The windowed tables: sessions (and their origin and size rows), PRs, searches.
TABLES = ("metric_windows", "metric_window_origins", "metric_window_sizes", "pr_windows",
          "search_windows")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(op.f(f"ix_{table}_segment"), table, ["segment", "window_start"])
    _replace_views("LEFT JOIN")


def downgrade() -> None:
    _replace_views("JOIN")
    for table in TABLES:
        op.drop_index(op.f(f"ix_{table}_segment"), table_name=table)


def _replace_views(join: str) -> None:
    """The two bucket views as 0001 made them, with `join` to their window."""
    views = {
        "session_metrics_by_origin": f"""
        SELECT o.org_id, o.segment, o.window_start, w.window_end, o.origin,
               o.sessions_created_count
        FROM metric_window_origins o
        {join} metric_windows w
          ON w.org_id = o.org_id AND w.segment = o.segment AND w.window_start = o.window_start
        """,
        "session_metrics_by_size": f"""
        SELECT s.org_id, s.segment, s.window_start, w.window_end, s.size,
               s.sessions_created_count, s.sessions_with_merged_prs_count
        FROM metric_window_sizes s
        {join} metric_windows w
          ON w.org_id = s.org_id AND w.segment = s.segment AND w.window_start = s.window_start
        """,
    }
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, body in views.items():
        if sqlite:
            op.execute(f"DROP VIEW IF EXISTS {name}")
            op.execute(f"CREATE VIEW {name} AS {body}")
        else:
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
