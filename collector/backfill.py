"""`collector backfill`: history, fast and resumable, through the daemon's collection path.

The plan is streamed: windows are generated a day at a time for every target (targets take
turns, so tokens share the load), and each day's ledger entries are read in one query to skip
what is done. A range of five years for a hundred orgs never exists as a list in memory.

A window counts as done, and is skipped, when it is settled, or when it has been collected
and is not yet due again. With `--force` nothing is skipped. What a killed backfill had
written is therefore skipped by the next one: it resumes instead of starting over.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import SQLAlchemyError

from collector.collect import Work
from collector.db import describe_error, reading
from collector.errors import StorageError
from collector.store import LEDGER, Store
from collector.targets import Target
from collector.windows import (
    DAY,
    count_windows,
    floor_to,
    to_datetime,
    to_timestamp,
    windows_between,
)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str) -> int:
    """A UTC date (``2026-01-31``) or an ISO datetime (naive means UTC) as Unix seconds."""
    value = text.strip()
    try:
        if _DATE.match(value):
            moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: write 2026-01-31 (UTC) or 2026-01-31T12:00:00Z"
        ) from None
    return int(moment.timestamp())


@dataclass(frozen=True, slots=True)
class Range:
    """The windows of `size` seconds overlapping ``[since, until)``, snapped to boundaries."""

    since: int
    until: int
    size: int

    @classmethod
    def snapped(cls, since: float, until: float, size: int) -> Range:
        start = floor_to(since, size)
        end = -(-int(until) // size) * size  # up to the next boundary
        if end <= start:
            raise ValueError(
                "the date range is empty or the wrong way round: --since must come "
                "before --until"
            )
        return cls(start, end, size)

    @property
    def windows_per_target(self) -> int:
        return count_windows(self.since, self.until, self.size)


def _done_starts(
    store: Store, target: Target, start: int, end: int, now: float
) -> set[int]:
    c = LEDGER.c
    stmt = select(c.window_start).where(
        c.org_id == target.org_id,
        c.segment == target.segment,
        c.window_start >= to_datetime(start),
        c.window_start < to_datetime(end),
        or_(
            c.settled.is_(True),
            and_(c.fetch_count > 0, c.next_due_at > to_datetime(int(now))),
        ),
    )
    try:
        with reading(store.engine) as conn:
            return {to_timestamp(row[0]) for row in conn.execute(stmt)}
    except SQLAlchemyError as exc:
        raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None


def plan(
    store: Store,
    targets: Sequence[Target],
    span: Range,
    *,
    now: float,
    force: bool = False,
    on_skip: Callable[[int], None] | None = None,
) -> Iterator[Work]:
    """The (target, window) pairs still to fetch, a day of windows at a time."""
    chunk = max(span.size, DAY)
    for start in range(span.since, span.until, chunk):
        end = min(start + chunk, span.until)
        for target in targets:
            done = set() if force else _done_starts(store, target, start, end, now)
            if done and on_skip is not None:
                on_skip(len(done))
            for window in windows_between(start, end, span.size):
                if window.start not in done:
                    yield target, window


@dataclass(frozen=True, slots=True)
class Estimate:
    windows: int
    requests: int
    seconds: float


def estimate(
    store: Store,
    targets: Sequence[Target],
    span: Range,
    *,
    now: float,
    force: bool,
    tokens: dict[str, str],
    rate_limit: float,
) -> Estimate:
    """How many windows the range holds, how many requests the backfill would make, and how
    long they take at the client-side rate limit (each token has its own)."""
    per_token: dict[str, int] = {}
    requests = 0
    for target, _ in plan(store, targets, span, now=now, force=force):
        requests += 1
        key = tokens.get(target.org_id, "")
        per_token[key] = per_token.get(key, 0) + 1
    seconds = max((n / rate_limit for n in per_token.values()), default=0.0)
    return Estimate(span.windows_per_target * len(targets), requests, math.ceil(seconds))
