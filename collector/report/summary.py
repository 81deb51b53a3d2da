"""The figures on top (the last seven full days against the seven before) and the data
quality table (per org and source: days complete, partial, missing; failing windows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from collector.report.queries import ALL, Daily, Data
from collector.status import TargetStatus


@dataclass(frozen=True)
class Weeks:
    """The summary's two periods of seven UTC days, inclusive."""

    last: date

    @classmethod
    def ending(cls, last_day: date, today: date) -> Weeks:
        """The seven days ending with the last full day: `last_day`, or yesterday when the
        range reaches today (today is not over)."""
        return cls(min(last_day, today - timedelta(days=1)))

    @property
    def current(self) -> tuple[date, date]:
        return self.last - timedelta(days=6), self.last

    @property
    def previous(self) -> tuple[date, date]:
        return self.last - timedelta(days=13), self.last - timedelta(days=7)


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    current: float | None
    previous: float | None
    decimals: int = 0
    note: str = ""

    @property
    def change(self) -> float | None:
        """The change in percent, None when there is nothing to compare with."""
        if self.current is None or not self.previous:
            return None
        return 100 * (self.current - self.previous) / self.previous


def _inside(day: date, period: tuple[date, date]) -> bool:
    return period[0] <= day <= period[1]


def figures(data: Data, weeks: Weeks, segments: tuple[str, ...]) -> list[Figure]:
    """Sessions, ACUs, PRs merged and daily active users over both weeks: the numbers of
    `devin_daily` (its columns are the whole org's rows of these daily views), or of the
    chosen segments' rows when only segments are chosen."""
    whole = not segments or ALL in segments
    chosen = {ALL} if whole else set(segments)
    periods = (weeks.current, weeks.previous)

    def total(rows: Mapping[tuple[str, str, date], Daily], column: str) -> list[float | None]:
        return [_total([r.values[column] for (org, seg, day), r in rows.items()
                        if org in data.orgs and seg in chosen and _inside(day, period)])
                for period in periods]

    sessions, acus, merged = (total(data.sessions, "sessions"), total(data.sessions, "acus"),
                              total(data.prs, "merged"))
    acus = [None if v is None else round(v, 6) for v in acus]
    found = [Figure("sessions", "Sessions", sessions[0], sessions[1]),
             Figure("acus", "ACUs (of sessions)", acus[0], acus[1], decimals=1),
             Figure("prs_merged", "PRs merged", merged[0], merged[1],
                    note="of the PRs created in the period")]
    if whole:
        dau = [_daily_average(data, period) for period in periods]
        note = "average per day" + (", summed over organizations" if len(data.orgs) > 1
                                    else "")
        found.append(Figure("dau", "Daily active users", dau[0], dau[1], decimals=1,
                            note=note))
    return found


def _total(values: Sequence[float]) -> float | None:
    """The sum, None when there is nothing to sum (no rows: not collected)."""
    return float(sum(values)) if values else None


def _daily_average(data: Data, period: tuple[date, date]) -> float | None:
    """The daily active users of each day (summed over orgs), averaged over the days that
    have them."""
    per_day: dict[date, float] = {}
    for (org, kind), buckets in data.active.items():
        if kind != "day" or org not in data.orgs:
            continue
        for b in buckets:
            if _inside(b.start, period):
                per_day[b.start] = per_day.get(b.start, 0.0) + b.value
    return round(sum(per_day.values()) / len(per_day), 6) if per_day else None


@dataclass
class Quality:
    org: str
    source: str
    segment: str = ALL
    complete: int = 0
    partial: int = 0
    missing: int = 0
    failing: int | None = None  #: None when the status was not read
    #: The newest failing windows: (start, end, error, attempts).
    failing_windows: list[tuple[str, str, str, int]] = field(default_factory=list)


SOURCES = ("sessions", "prs", "searches", "active_users", "consumption")
LABELS = {"sessions": "sessions", "prs": "PRs", "searches": "searches",
          "active_users": "active users (days)", "consumption": "consumption (billing days)"}


def quality(data: Data, today: date, segments: tuple[str, ...],
            statuses: Sequence[TargetStatus] | None) -> list[Quality]:
    """Per org, source and segment: the days of the range up to today that are complete,
    partial (collected, not final) or missing, and the failing windows `status` knows."""
    last = min(data.last_day, today)
    expected = {data.first_day + timedelta(days=i)
                for i in range(max((last - data.first_day).days + 1, 0))}
    found: dict[tuple[str, str, str], dict[date, bool]] = {}
    for source, daily in (("sessions", data.sessions), ("prs", data.prs)):
        for (org, seg, day), row in daily.items():
            found.setdefault((org, source, seg), {})[day] = row.complete
    for (org, day), row in data.searches.items():
        found.setdefault((org, "searches", ALL), {})[day] = row.complete
    for (org, period), buckets in data.active.items():
        if period == "day":
            found.setdefault((org, "active_users", ALL), {}).update(
                {b.start: b.final for b in buckets})
    for org, buckets in data.billed.items():
        found.setdefault((org, "consumption", ALL), {}).update(
            {b.start: b.final for b in buckets})
    failing: dict[tuple[str, str, str], list[TargetStatus]] = {}
    for status in statuses or ():
        source = status.source.split(".")[0]
        segment = ALL if source == "active_users" else status.segment
        failing.setdefault((status.org_id, source, segment), []).append(status)
    keys = set(found) | set(failing)
    order = {name: i for i, name in enumerate(SOURCES)}
    rows: list[Quality] = []
    for org, source, seg in sorted(keys, key=lambda k: (k[0], k[2] != ALL, k[2],
                                                         order.get(k[1], 9))):
        if org not in data.orgs or (segments and seg not in segments):
            continue
        days = {d: c for d, c in found.get((org, source, seg), {}).items() if d in expected}
        line = Quality(org, source, seg, complete=sum(days.values()),
                       partial=sum(not c for c in days.values()),
                       missing=len(expected) - len(days))
        if statuses is not None:
            mine = failing.get((org, source, seg), [])
            line.failing = sum(s.failing for s in mine)
            windows = sorted(((w.window_start, w.as_dict(), w.error, w.failures)
                              for s in mine for w in s.failing_windows), reverse=True)
            line.failing_windows = [(d["window_start"], d["window_end"], error, count)
                                   for _, d, error, count in windows[:3]]
        rows.append(line)
    return rows
