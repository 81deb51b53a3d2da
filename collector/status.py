"""`collector status`: per org and segment, how fresh and how complete the data is.

Read from the ledger with aggregate SQL, so it costs the same for a week or five years.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, case, func, not_, select
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error, reading
from collector.errors import StorageError
from collector.store import LEDGER
from collector.targets import Target
from collector.windows import count_windows, floor_to, to_datetime, to_timestamp, window_at


@dataclass
class FailingWindow:
    window_start: int
    window_end: int
    failures: int
    error: str


@dataclass
class TargetStatus:
    org_id: str
    segment: str
    newest_window: int | None = None
    last_success: int | None = None
    staleness: float | None = None
    collected: int = 0
    unsettled: int = 0
    missing: int = 0
    failing: int = 0
    failing_windows: list[FailingWindow] = field(default_factory=list)
    stale: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_status(
    engine: Engine,
    targets: list[Target],
    *,
    now: float,
    size: int,
    horizon: int,
    max_age: float,
    failing_limit: int = 5,
) -> list[TargetStatus]:
    """Status of every target. `missing` counts closed windows inside the catch-up horizon
    never collected; `stale` is set when the last success is older than `max_age`."""
    c = LEDGER.c
    since = to_datetime(floor_to(now - horizon, size))  # where `expected` starts counting
    current = window_at(now, size)
    collected = c.fetch_count > 0
    summary = (
        select(
            c.org_id,
            c.segment,
            func.max(case((collected, c.window_start))).label("newest"),
            func.max(c.last_fetched_at).label("last_success"),
            func.count(case((collected, 1))).label("collected"),
            func.count(case((and_(collected, not_(c.settled)), 1))).label("unsettled"),
            func.count(
                case((and_(collected, c.window_start >= since,
                           c.window_start < to_datetime(current.start)), 1))
            ).label("recent"),
            func.count(case((c.last_error.is_not(None), 1))).label("failing"),
        )
        .group_by(c.org_id, c.segment)
    )
    failing = (
        select(c.org_id, c.segment, c.window_start, c.window_end, c.failure_count, c.last_error)
        .where(c.last_error.is_not(None))
        .order_by(c.window_start.desc())
    )
    expected = count_windows(now - horizon, current.start, size)
    try:
        with reading(engine) as conn:
            rows = {(r.org_id, r.segment): r for r in conn.execute(summary)}
            failures = conn.execute(failing).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
    result = []
    for target in targets:
        status = TargetStatus(target.org_id, target.segment, missing=expected)
        row = rows.get((target.org_id, target.segment))
        if row is not None:
            status.newest_window = _ts(row.newest)
            status.last_success = _ts(row.last_success)
            status.collected = row.collected
            status.unsettled = row.unsettled
            status.missing = max(0, expected - row.recent)
            status.failing = row.failing
        if status.last_success is not None:
            status.staleness = max(0.0, now - status.last_success)
            status.stale = status.staleness > max_age
        status.failing_windows = [
            FailingWindow(to_timestamp(f.window_start), to_timestamp(f.window_end),
                          f.failure_count, f.last_error)
            for f in failures
            if (f.org_id, f.segment) == (target.org_id, target.segment)
        ][:failing_limit]
        result.append(status)
    return result


def _ts(value: Any) -> int | None:
    return None if value is None else to_timestamp(value)
