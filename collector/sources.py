"""Sources: each endpoint the collector reads, described once. Pure.

A source states where its endpoint is, whether a target's user filters apply to it, the model
a 200 body must match, and the tables its answers fill with the rows each answer becomes.
The client, the collection step, the writer, the ledger (keyed by source), the planner,
backfill, status and the Prometheus labels all work from this description, so adding an
endpoint means describing it here, creating its tables in a migration, and adding its views
(see docs/architecture.md, "Adding an endpoint").

Every source's main table has one row per target and window: the key (``org_id``,
``segment``, ``window_start``), ``window_end`` and ``window_seconds``, the source's value
columns, then ``fetched_at`` and ``raw_body`` (the JSON as the API sent it, so fields the API
adds later are kept). A child table holds buckets of a window (by origin, by size): the key,
then its own columns; it is replaced whole each time the window is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from collector.payload import SessionMetrics

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ChildTable:
    """Buckets of one window: `rows` turns a validated answer into rows of `columns`."""

    name: str
    columns: tuple[str, ...]
    rows: Callable[[Any], list[Row]]


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """One endpoint. `values` turns a validated answer into the main table's `columns`.

    Time policy: additive windows of the configured size, fetched while open on every run
    and re-polled on the age ladder after they close (late data), then settled."""

    name: str
    path: str
    segmented: bool
    model: type[BaseModel]
    table: str
    columns: tuple[str, ...]
    values: Callable[[Any], Row]
    children: tuple[ChildTable, ...] = ()

    def url(self, org_id: str) -> str:
        return self.path.format(org_id=org_id)

    def __str__(self) -> str:
        return self.name


# -- sessions ------------------------------------------------------------------------------

def _session_values(m: SessionMetrics) -> Row:
    return (
        m.sessions_created_count,
        m.sessions_created_with_playbook_count,
        m.sessions_created_with_search_count,
        m.sessions_with_merged_prs_count,
        m.avg_acus_per_session,
    )


def _origin_rows(m: SessionMetrics) -> list[Row]:
    return list(m.sessions_created_by_origin.items())


def _size_rows(m: SessionMetrics) -> list[Row]:
    created, merged = m.sessions_created_by_size, m.sessions_with_merged_prs_by_size
    return [(size, created.get(size, 0), merged.get(size, 0)) for size in {**created, **merged}]


SESSIONS = Source(
    name="sessions",
    path="/v3/organizations/{org_id}/metrics/sessions",
    segmented=True,
    model=SessionMetrics,
    table="metric_windows",
    columns=(
        "sessions_created_count",
        "sessions_created_with_playbook_count",
        "sessions_created_with_search_count",
        "sessions_with_merged_prs_count",
        "avg_acus_per_session",
    ),
    values=_session_values,
    children=(
        ChildTable("metric_window_origins", ("origin", "sessions_created_count"), _origin_rows),
        ChildTable(
            "metric_window_sizes",
            ("size", "sessions_created_count", "sessions_with_merged_prs_count"),
            _size_rows,
        ),
    ),
)

#: Every source, by name: what `[sources]` and `--source` may name.
SOURCES: dict[str, Source] = {source.name: source for source in (SESSIONS,)}
