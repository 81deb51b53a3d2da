"""What the report reads: a handful of aggregate queries over the public views only.

Every query covers every selected org at once (grouped by org, segment and day), so the cost
does not grow with the number of charts. Days and timestamps are bound as the backend stores
them (text on SQLite, `date` and `timestamptz` on PostgreSQL) and read back as `date`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error, reading
from collector.errors import StorageError

ALL = "all"


@dataclass(frozen=True, slots=True)
class Daily:
    """One row of a daily view (sessions, PRs or searches) for an org, segment and day."""

    values: dict[str, float]
    complete: bool


@dataclass(frozen=True, slots=True)
class Bucket:
    """One active-user bucket (day, week or month) or one billing day."""

    start: date
    end: date
    value: float
    final: bool


@dataclass
class Data:
    """Everything the report shows, keyed by org id (and segment where segments apply)."""

    first_day: date
    last_day: date
    #: org id -> name (None when unknown), for every org known or seen in the range.
    orgs: dict[str, str | None] = field(default_factory=dict)
    #: (org, segment, day) -> row, for session_metrics_daily / pr_metrics_daily.
    sessions: dict[tuple[str, str, date], Daily] = field(default_factory=dict)
    prs: dict[tuple[str, str, date], Daily] = field(default_factory=dict)
    #: (org, day) -> row of search_metrics_daily.
    searches: dict[tuple[str, date], Daily] = field(default_factory=dict)
    #: (org, segment, day) -> origin -> sessions.
    origins: dict[tuple[str, str, date], dict[str, int]] = field(default_factory=dict)
    #: (org, segment) -> size -> (sessions, sessions with a merged PR), over the range.
    sizes: dict[tuple[str, str], dict[str, tuple[int, int]]] = field(default_factory=dict)
    #: (org, period) -> buckets of the chosen definition, by start.
    active: dict[tuple[str, str], list[Bucket]] = field(default_factory=dict)
    #: The active-user definition shown: (min_sessions, min_searches), None without rows.
    definition: tuple[int, int] | None = None
    #: org -> billing days (start = billing date; the day runs from 08:00 UTC).
    billed: dict[str, list[Bucket]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.sessions or self.prs or self.searches or self.active or self.billed)

    def segments(self) -> list[tuple[str, str]]:
        """Every (org, segment) other than the whole org with session or PR rows."""
        found = {(o, s) for o, s, _ in self.sessions} | {(o, s) for o, s, _ in self.prs}
        return sorted(k for k in found if k[1] != ALL)


def as_date(value: Any) -> date:
    """A day or timestamp of either backend (text on SQLite) as a date."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        day: date = value.date()
        return day
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


class Reader:
    """The report's queries on one engine, dialect-aware where the views' types differ.

    The queries run at once, each on a connection of its own: the database does the work
    (SQLite releases the GIL while it steps), and the report waits for the slowest only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"

    def day_param(self, value: date) -> Any:
        return value.isoformat() if self.sqlite else value

    def time_param(self, value: date) -> Any:
        """Midnight UTC of `value`, as the views' timestamps are stored."""
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S") if self.sqlite else moment

    def first_day(self, orgs: Sequence[str]) -> date | None:
        """The first UTC day `devin_daily` has a row for, or billing day
        `acu_consumption_daily` has (a day's first billing day starts the day before), of
        `orgs` when given; None: no data at all."""
        where = " WHERE org_id IN :orgs" if orgs else ""
        statement = text(f"SELECT MIN(first) FROM (SELECT MIN(day) AS first FROM devin_daily"
                         f"{where} UNION ALL SELECT MIN(billing_date) FROM "
                         f"acu_consumption_daily{where}) AS firsts")
        params: dict[str, Any] = {}
        if orgs:
            statement = statement.bindparams(bindparam("orgs", expanding=True))
            params["orgs"] = list(orgs)
        try:
            with reading(self.engine) as conn:
                found = conn.execute(statement, params).scalar()
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the views: {describe_error(exc)}") from None
        return None if found is None else as_date(found)

    def queries(self) -> dict[str, str]:
        """Each query by name; ``{orgs}`` stands for the org filter (empty without one).
        Bound: the range's days (d0, d1) and the end of the last (t1), and where the
        summary's days start (e0, u0) when before the range. Sessions, PRs and searches
        come from the daily views (one row per org, segment and UTC day, whatever the
        window size). Rows with no sessions are left out of the sums (they add nothing,
        and are most of the rows)."""
        daily = "day >= :e0 AND day <= :d1{orgs}"
        days = "day >= :d0 AND day <= :d1{orgs}"
        return {
            "sessions": "SELECT org_id, segment, day, sessions_created_count,"
                        " sessions_with_merged_prs_count, total_acus, complete"
                        f" FROM session_metrics_daily WHERE {daily}",
            "prs": "SELECT org_id, segment, day, prs_created_count, prs_merged_count,"
                   f" complete FROM pr_metrics_daily WHERE {daily}",
            "searches": "SELECT org_id, day, searches_created_count, complete"
                        f" FROM search_metrics_daily WHERE segment = 'all' AND {daily}",
            "origins": "SELECT org_id, segment, day, origin, sessions_created_count"
                       " FROM session_metrics_daily_by_origin"
                       f" WHERE sessions_created_count > 0 AND {days}",
            "sizes": "SELECT org_id, segment, size, SUM(sessions_created_count),"
                     " SUM(sessions_with_merged_prs_count) FROM session_metrics_daily_by_size"
                     f" WHERE sessions_created_count > 0 AND {days}"
                     " GROUP BY org_id, segment, size",
            "active": "SELECT org_id, period, period_start, period_end, active_users,"
                      " min_sessions, min_searches, final FROM active_users"
                      " WHERE period_end > :u0 AND period_start < :t1{orgs}"
                      " ORDER BY org_id, period, period_start",
            "billed": "SELECT org_id, billing_date, acus, final FROM acu_consumption_daily"
                      " WHERE billing_date >= :d0 AND billing_date <= :d1{orgs}"
                      " ORDER BY org_id, billing_date",
            "orgs": "SELECT org_id, name, removed_at FROM organizations",
        }

    def read(self, first_day: date, last_day: date, orgs: Sequence[str],
             summary_from: date) -> Data:
        """The rows of the range, and of the daily views and active users from
        `summary_from` too (the summary's fourteen days may start before the range)."""
        earliest = min(first_day, summary_from)
        params: dict[str, Any] = {
            "d0": self.day_param(first_day), "d1": self.day_param(last_day),
            "e0": self.day_param(earliest),
            "t1": self.time_param(last_day + timedelta(days=1)),
            "u0": self.time_param(earliest)}
        if orgs:
            params["orgs"] = list(orgs)

        def run(sql: str) -> list[Any]:
            statement = text(sql.replace("{orgs}", " AND org_id IN :orgs" if orgs else ""))
            if orgs and ":orgs" in statement.text:
                statement = statement.bindparams(bindparam("orgs", expanding=True))
            try:
                with reading(self.engine) as conn:
                    return list(conn.execute(statement, params).all())
            except SQLAlchemyError as exc:
                raise StorageError(f"could not read the views: {describe_error(exc)}") from None

        queries = self.queries()
        # the slowest first
        order = ("origins", "sizes", "sessions", "prs", "searches", "active", "billed", "orgs")
        if self.sqlite and self.engine.url.database in (None, "", ":memory:"):
            # an in-memory database is one per connection (per thread): read it here
            rows = {name: run(queries[name]) for name in order}
        else:
            with ThreadPoolExecutor(max_workers=4) as pool:
                futures = {name: pool.submit(run, queries[name]) for name in order}
                rows = {name: future.result() for name, future in futures.items()}
        data = Data(first_day, last_day)
        self._fill(data, rows)
        data.orgs = self._orgs(rows["orgs"], data, orgs)
        return data

    def _fill(self, data: Data, rows: dict[str, list[Any]]) -> None:
        for org, seg, day, n, merged, acus, complete in rows["sessions"]:
            data.sessions[(org, seg, as_date(day))] = Daily(
                {"sessions": int(n), "merged": int(merged), "acus": float(acus or 0)},
                bool(complete))
        for org, seg, day, created, merged, complete in rows["prs"]:
            data.prs[(org, seg, as_date(day))] = Daily(
                {"created": int(created), "merged": int(merged)}, bool(complete))
        for org, day, n, complete in rows["searches"]:
            data.searches[(org, as_date(day))] = Daily({"searches": int(n)}, bool(complete))
        days: dict[Any, date] = {}  # as_date once per distinct value
        for org, seg, when, origin, n in rows["origins"]:
            key = days.get(when) or days.setdefault(when, as_date(when))
            data.origins.setdefault((org, seg, key), {})[origin] = int(n or 0)
        for org, seg, size, n, merged in rows["sizes"]:
            data.sizes.setdefault((org, seg), {})[size] = (int(n or 0), int(merged or 0))
        self._active(data, rows["active"])
        for org, day, acus, final in rows["billed"]:
            start = as_date(day)
            data.billed.setdefault(org, []).append(
                Bucket(start, start + timedelta(days=1), float(acus or 0), bool(final)))

    @staticmethod
    def _active(data: Data, rows: list[Any]) -> None:
        counts: dict[tuple[int, int], int] = {}
        for row in rows:
            key = (int(row[5]), int(row[6]))
            counts[key] = counts.get(key, 0) + 1
        if not counts:
            return
        # the default definition when collected, else the one with the most rows
        chosen = (1, 1) if (1, 1) in counts else max(counts, key=lambda k: (counts[k], k))
        data.definition = chosen
        for org, period, start, end, users, min_sessions, min_searches, final in rows:
            if (int(min_sessions), int(min_searches)) != chosen:
                continue
            data.active.setdefault((org, period), []).append(
                Bucket(as_date(start), as_date(end), float(users), bool(final)))

    @staticmethod
    def _orgs(rows: list[Any], data: Data, orgs: Sequence[str]) -> dict[str, str | None]:
        """Orgs with data in the range, and those the organizations table holds as present
        (named, where it knows the name), narrowed to `orgs` when given."""
        seen = {k[0] for k in data.sessions} | {k[0] for k in data.prs}
        seen |= {k[0] for k in data.searches} | {k[0] for k in data.active}
        seen |= set(data.billed)
        names: dict[str, str | None] = {}
        for org, name, removed in rows:
            if removed is None or org in seen:
                names[org] = name
        found = {org: names.get(org) for org in seen | set(names)}
        return {k: found[k] for k in sorted(found) if not orgs or k in orgs}
