"""`collector status`: per source, org and segment, how fresh and how complete the data is.

Read from the ledger through the store with aggregate SQL (`collector.ledger`), so it costs
the same for a week or five years: one query counts per target, another returns at most
`failing_limit` failing windows per target (the newest), however many windows are failing.

Each target gets a flag: ``ok``; ``WARN`` when windows are failing (the collector retries
them) but the last success is recent; ``STALE`` when the last success is older than
`max_age` (or there is none), the one state that fails the health check. A window counts as
failing while its last attempt failed and it is not settled: a settled window holds a good
value and is never fetched again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from collector.calendars import Calendar
from collector.store import Store
from collector.targets import Target
from collector.windows import to_datetime, to_timestamp

OK, WARN, STALE = "ok", "WARN", "STALE"


def iso(ts: int | None) -> str | None:
    """Unix seconds as ISO 8601 UTC text (``2026-11-20T00:00:00Z``); None stays None."""
    return None if ts is None else to_datetime(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FailingWindow:
    window_start: int
    window_end: int
    failures: int
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "window_start": iso(self.window_start),
                "window_end": iso(self.window_end)}


@dataclass
class TargetStatus:
    org_id: str
    segment: str
    source: str
    newest_window: int | None = None
    last_success: int | None = None
    #: Whole seconds since the last success.
    staleness: int | None = None
    collected: int = 0
    unsettled: int = 0
    missing: int = 0
    failing: int = 0
    failing_windows: list[FailingWindow] = field(default_factory=list)
    stale: bool = True
    #: The first window `missing` counts: the start of the catch-up horizon.
    horizon_start: int = 0
    #: Seconds without a success after which the target is stale.
    max_age: float = 0.0

    @property
    def flag(self) -> str:
        if self.stale:
            return STALE
        return WARN if self.failing else OK

    @property
    def backfill_since(self) -> int | None:
        """Where `collector backfill --since` fetches the missing windows from, if any."""
        return self.horizon_start if self.missing else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 UTC text, staleness in whole seconds."""
        return {
            "org_id": self.org_id,
            "segment": self.segment,
            "source": self.source,
            "newest_window": iso(self.newest_window),
            "last_success": iso(self.last_success),
            "staleness": self.staleness,
            "collected": self.collected,
            "unsettled": self.unsettled,
            "missing": self.missing,
            "failing": self.failing,
            "failing_windows": [f.as_dict() for f in self.failing_windows],
            "stale": self.stale,
            "flag": self.flag,
            "horizon_start": iso(self.horizon_start),
            "backfill_since": iso(self.backfill_since),
        }


def target_status(
    store: Store,
    targets: list[Target],
    *,
    now: float,
    horizon: int,
    max_age: float | None = None,
    failing_limit: int = 5,
) -> list[TargetStatus]:
    """Status of every target. `missing` counts closed windows (or buckets) of the
    target's calendar inside the catch-up horizon never collected; `stale` is set when the
    last success is older than `max_age` (default: three of the target's intervals);
    `failing_windows` holds the newest `failing_limit` failing windows."""
    calendars: dict[Calendar, set[str]] = {}
    for target in targets:
        calendars.setdefault(target.calendar, set()).add(target.source.name)
    groups = [(sorted(names), cal.floor(now - horizon), cal.at(now).start)
              for cal, names in calendars.items()]
    summary, failing = store.status_rows(groups, failing_limit=failing_limit)
    rows = {(r.source, r.org_id, r.segment): r for r in summary}
    failures: dict[tuple[str, str, str], list[FailingWindow]] = {}
    for f in failing:
        failures.setdefault((f.source, f.org_id, f.segment), []).append(
            FailingWindow(to_timestamp(f.window_start), to_timestamp(f.window_end),
                          f.failure_count, f.last_error)
        )
    result = []
    for target in targets:
        calendar = target.calendar
        horizon_start = calendar.floor(now - horizon)  # where `expected` starts counting
        expected = calendar.count(now - horizon, calendar.at(now).start)
        limit = max_age if max_age is not None else 3 * target.timing.interval
        key = (target.source.name, target.org_id, target.segment)
        status = TargetStatus(target.org_id, target.segment, target.source.name,
                              missing=expected, horizon_start=horizon_start, max_age=limit)
        row = rows.get(key)
        if row is not None:
            status.newest_window = _ts(row.newest)
            status.last_success = _ts(row.last_success)
            status.collected = row.collected
            status.unsettled = row.unsettled
            status.missing = max(0, expected - row.recent)
            status.failing = row.failing
        if status.last_success is not None:
            status.staleness = max(0, round(now - status.last_success))
            status.stale = now - status.last_success > limit
        status.failing_windows = failures.get(key, [])
        result.append(status)
    return result


def _ts(value: Any) -> int | None:
    return None if value is None else to_timestamp(value)
