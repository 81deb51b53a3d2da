"""`collector backfill`: history, fast and resumable, through the daemon's collection path.

The plan is streamed: windows are generated a day at a time for every target (targets take
turns, so tokens share the load), and each day's ledger entries are read in one query to skip
what is done. A range of five years for a hundred orgs never exists as a list in memory.

A window counts as done, and is skipped, when the ledger does not hold it as due: the same
rule the daemon plans by (settled, or collected and not yet due again). Windows are claimed
like the daemon's, so a backfill beside daemons never fetches a window one of them is
fetching. With `--force` settled windows are fetched again. What a killed backfill had
written is skipped by the next one, and the claims it left are let go: it resumes instead of
starting over.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest

from collector.collection import Work
from collector.store import Store
from collector.targets import Target
from collector.throttle import Clock
from collector.windows import (
    DAY,
    ceil_to,
    count_windows,
    floor_to,
    window_at,
    windows_between,
)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str) -> float:
    """A UTC date (``2026-01-31``) or an ISO datetime (naive means UTC) as Unix seconds,
    fractions kept: range ends are rounded by one rule, in `Range.snapped`."""
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
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Range:
    """The windows of `size` seconds overlapping ``[since, until)``, snapped to boundaries
    by the one rounding rule (`floor_to` and `ceil_to`, as `count_windows` counts)."""

    since: int
    until: int
    size: int

    @classmethod
    def snapped(cls, since: float, until: float, size: int) -> Range:
        start = floor_to(since, size)
        end = ceil_to(until, size)
        if end <= start:
            raise ValueError(
                "the date range is empty or the wrong way round: --since must come "
                "before --until"
            )
        return cls(start, end, size)

    @classmethod
    def up_to_now(cls, since: float, until: float, size: int, now: float) -> tuple[Range, bool]:
        """The range, its end clamped to the end of the open window at `now`: a window that
        has not started is never fetched (its zeros would read as truth). Returns the range
        and whether `until` was clamped."""
        open_end = window_at(now, size).end
        if floor_to(since, size) >= open_end:
            raise ValueError("--since is in the future: there is nothing to fetch yet")
        return cls.snapped(since, min(until, open_end), size), until > open_end

    @property
    def windows_per_target(self) -> int:
        return count_windows(self.since, self.until, self.size)


@dataclass(frozen=True, slots=True)
class Claims:
    """Claim windows as the daemon does, so a backfill and daemons never fetch one window
    at once: under the name `owner`, each for `lease` seconds (see `Store.claim`)."""

    owner: str
    lease: float


def plan(
    store: Store,
    targets: Sequence[Target],
    span: Range,
    *,
    clock: Clock,
    interval: int,
    claims: Claims | None,
    force: bool = False,
    on_skip: Callable[[int], None] | None = None,
) -> Iterator[Work]:
    """The (target, window) pairs still to fetch, a day of windows at a time, targets taking
    turns window by window.

    A window is skipped when the ledger does not hold it as due (the daemon's rule,
    `due_clause`: settled, or collected and not yet due again) or another process holds
    it. With `claims`, the rest are claimed just before they are handed out; without, the
    plan only reads (a dry run). With `force`, settled windows are fetched again too."""
    chunk = max(span.size, DAY)
    for start in range(span.since, span.until, chunk):
        end = min(start + chunk, span.until)
        lists = [_day(store, target, start, end, span.size, clock=clock, interval=interval,
                      claims=claims, force=force, on_skip=on_skip) for target in targets]
        # targets take turns window by window, so every token has work at every moment
        for pairs in zip_longest(*lists):
            yield from (pair for pair in pairs if pair is not None)


def _day(
    store: Store,
    target: Target,
    start: int,
    end: int,
    size: int,
    *,
    clock: Clock,
    interval: int,
    claims: Claims | None,
    force: bool,
    on_skip: Callable[[int], None] | None,
) -> list[Work]:
    """The pairs of `target` in ``[start, end)`` still to fetch, claimed with `claims`."""
    windows = list(windows_between(start, end, size))
    now = clock()
    if claims is not None:
        taken = store.claim(
            target, windows, owner=claims.owner, now=now, cutoff=now,
            lease=claims.lease, interval=interval, force=force,
        )
    else:
        skipped = store.not_due_starts(
            target, start, end, now=now, cutoff=now, interval=interval, force=force
        )
        taken = {w.start for w in windows} - skipped
    if len(taken) < len(windows) and on_skip is not None:
        on_skip(len(windows) - len(taken))
    return [(target, window) for window in windows if window.start in taken]


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
    interval: int,
    force: bool,
    tokens: Mapping[str, str],
    rates: Mapping[str, float],
) -> Estimate:
    """How many windows the range holds, how many requests the backfill would make, and how
    long they take at each token's rate. `tokens` maps org ids to what identifies their
    token (orgs sharing a token share its limit), `rates` those to requests per second."""
    per_token: dict[str, int] = {}
    requests = 0
    work = plan(
        store, targets, span, clock=lambda: now, interval=interval, claims=None, force=force
    )
    for target, _ in work:
        requests += 1
        key = tokens.get(target.org_id, "")
        per_token[key] = per_token.get(key, 0) + 1
    seconds = max((n / rates.get(key, 1.0) for key, n in per_token.items()), default=0.0)
    return Estimate(span.windows_per_target * len(targets), requests, math.ceil(seconds))
