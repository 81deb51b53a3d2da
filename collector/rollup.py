"""The daily rollups: tables of UTC-day totals, read by the daily views, kept exact by the
writer.

Each windowed source describes its rollups (`collector.sources.Rollup`). When `Store.save`
writes windows, it recomputes, in the same transaction, every rollup row of each (org,
segment, UTC day) the batch touched, from the base tables: the day's totals are upserted
(``INSERT … SELECT … ON CONFLICT DO UPDATE``) and its bucket rows (by origin, by size)
replaced, each an aggregate over the day's windows. A recompute, not a delta: a re-poll that
lowers a value, a late merged PR or a forced backfill leaves each rollup row equal to the
aggregate the per-window views compute, whatever was written before.

A window belongs to the UTC day of its start, the day the per-window views group it under;
every window size divides a day, so no window spans two.

On PostgreSQL two writers (a daemon and a backfill) may write windows of one day at once,
each in its own transaction. Before recomputing, each takes a transaction-scoped advisory
lock per (source, org, segment, day), all of them in one global order (so they cannot
deadlock), and only then reads: the recomputes of a day run one after the other, and the
later one, whose statements start after the earlier one committed, reads the windows of
both. SQLite has one writer at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table

from collector.outcomes import Collected
from collector.schema import METADATA, timestamp_binder
from collector.sources import SOURCES, Rollup, Source
from collector.windows import DAY, floor_to, to_datetime

#: What the day's windows cover, in a rollup of a source's main table: windows fetched
#: after they closed, windows in a day at the stored size, whether every second of the day
#: was fetched after it closed, and the newest fetch (`session_metrics_daily`, docs/sql.md).
COVERAGE: tuple[tuple[str, str], ...] = (
    ("windows_collected", "COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END)"),
    ("windows_expected", f"{DAY} / MIN(w.window_seconds)"),
    ("complete", "SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)"
                 f" >= {DAY}"),
    ("fetched_at", "MAX(w.fetched_at)"),
)
KEY = ("org_id", "segment", "day")

Params = tuple[Any, ...]
#: A day to recompute: source name, org, segment, and the day's first second (Unix).
DayKey = tuple[str, str, str, int]


def day_of(column: str, dialect: str) -> str:
    """The UTC date of a timestamp column: ``date`` on PostgreSQL, ``YYYY-MM-DD`` text on
    SQLite (what the daily views have always returned)."""
    if dialect == "sqlite":
        return f"date({column})"
    return f"({column} AT TIME ZONE 'UTC')::date"


@dataclass(frozen=True, slots=True)
class _Step:
    """One statement of a recompute, and what it takes: org, segment and day (``day``), or
    the day, then org, segment and the range of the day's windows (``range``)."""

    sql: str
    takes: str


class Rollups:
    """The rollup statements of one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        sqlite = dialect == "sqlite"
        self._ph = "?" if sqlite else "%s"
        self._ts = timestamp_binder(dialect)
        self._day: Callable[[date], Any] = date.isoformat if sqlite else lambda day: day
        self._steps: dict[str, tuple[_Step, ...]] = {}

    # -- statements ------------------------------------------------------------------------

    def columns(self, source: Source, rollup: Rollup) -> tuple[str, ...]:
        """The rollup table's columns, in the order of its table (checked)."""
        coverage = tuple(name for name, _ in COVERAGE) if rollup.of == source.table else ()
        names = (*KEY, *rollup.by, *rollup.sums, *(n for n, _ in rollup.computed), *coverage)
        table: Table = METADATA.tables[rollup.table]
        if tuple(c.name for c in table.columns) != names:
            raise RuntimeError(f"the rollup of {rollup.table} no longer matches its columns")
        return names

    def select(self, source: Source, rollup: Rollup, where: str = "", day: str = "") -> str:
        """The rollup's rows, aggregated from its table (``WHERE`` `where`, when given). The
        day is each window's own, or `day` (a placeholder) when `where` keeps one day."""
        keys = ["w.org_id", "w.segment"]
        by = [f"w.{c}" for c in rollup.by]
        group = [*keys, *by] if day else [*keys, day_of("w.window_start", self.dialect), *by]
        values = [*keys, day or group[2], *by, *(f"SUM(w.{c})" for c in rollup.sums),
                  *(expr for _, expr in rollup.computed)]
        if rollup.of == source.table:
            values += [expr for _, expr in COVERAGE]
        where = f" WHERE {where}" if where else ""
        return (f"SELECT {', '.join(values)} FROM {rollup.of} w{where}"
                f" GROUP BY {', '.join(group)}")

    def steps(self, source: Source) -> tuple[_Step, ...]:
        """The statements that recompute one day of `source`'s rollups."""
        found = self._steps.get(source.name)
        if found is None:
            p = self._ph
            days = (f"w.org_id = {p} AND w.segment = {p}"
                    f" AND w.window_start >= {p} AND w.window_start < {p}")
            steps: list[_Step] = []
            for rollup in source.daily:
                names = self.columns(source, rollup)
                insert = (f"INSERT INTO {rollup.table} ({', '.join(names)}) "
                          f"{self.select(source, rollup, days, day=p)}")
                if rollup.by:  # bucket rows: replaced whole (a bucket may be gone)
                    steps.append(_Step(f"DELETE FROM {rollup.table} WHERE org_id = {p}"
                                       f" AND segment = {p} AND day = {p}", "day"))
                    steps.append(_Step(insert, "range"))
                else:
                    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in KEY)
                    steps.append(_Step(f"{insert} ON CONFLICT ({', '.join(KEY)}) "
                                       f"DO UPDATE SET {updates}", "range"))
            found = self._steps[source.name] = tuple(steps)
        return found

    # -- keeping them ----------------------------------------------------------------------

    def refresh(self, conn: Connection, items: Sequence[Collected]) -> None:
        """Recompute every rollup row of the days `items` wrote (their windows' UTC days),
        from the tables, on `conn` (the transaction that wrote them)."""
        keys = sorted({(item.target.source.name, item.target.org_id, item.target.segment,
                        floor_to(item.window.start, DAY))
                       for item in items if item.target.source.daily})
        if not keys:
            return
        if self.dialect == "postgresql":
            locks = sorted({_lock_id(key) for key in keys})
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", [(n,) for n in locks])
        for name, group in groupby(keys, itemgetter(0)):
            day_rows: list[Params] = []
            range_rows: list[Params] = []
            for _, org, segment, start in group:
                first = to_datetime(start)
                day = self._day(first.date())
                day_rows.append((org, segment, day))
                range_rows.append((day, org, segment, self._ts(first),
                                   self._ts(to_datetime(start + DAY))))
            for step in self.steps(SOURCES[name]):
                conn.exec_driver_sql(step.sql, day_rows if step.takes == "day" else range_rows)

    def rebuild(self, conn: Connection) -> None:
        """Every rollup row again, from the tables: what migration 0008 does, for a database
        whose tables were written by something other than `Store.save`."""
        for source in SOURCES.values():
            for rollup in source.daily:
                names = self.columns(source, rollup)
                conn.exec_driver_sql(f"DELETE FROM {rollup.table}")
                conn.exec_driver_sql(f"INSERT INTO {rollup.table} ({', '.join(names)}) "
                                     f"{self.select(source, rollup)}")


def _lock_id(key: DayKey) -> int:
    """A day key as a signed 64-bit advisory lock id, the same in every process."""
    text = "\x1f".join(str(part) for part in ("collector.rollup", *key))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big",
                          signed=True)
