"""`collector backfill`: history, fast and resumable, through the daemon's collection path.

The plan is streamed: windows are generated a day at a time for every target (the buckets
of a source that answers many a call, a request's worth at a time), targets taking turns so
tokens share the load, and each slice's ledger entries are read in one query to skip what is
done. A range of five years for a hundred orgs never exists as a list in memory.

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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice, zip_longest

from collector.calendars import Calendar, windows
from collector.collection import Work
from collector.store import Store
from collector.targets import Target, chunks
from collector.throttle import Clock
from collector.windows import DAY, Window

#: How often a backfill asks again for windows another process holds (seconds).
RETAKE_EVERY = 0.5

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: The earliest moment a --since or --until may name. The Devin API holds nothing from
#: before 2024, so no real range starts earlier; a bound well after the Unix epoch keeps
#: every calendar's arithmetic (buckets aligned to the epoch, weeks to 1970-01-05, a bucket
#: stepped back from the first) inside the range of dates and timestamps, where 0001-01-01
#: failed deep in the plan with "year 0 is out of range"; and it turns a typo (0206-01-01,
#: 1026-01-01) into an error instead of a plan of centuries of empty windows.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def read_when(text: str) -> datetime:
    """A UTC date (``2026-01-31``) or an ISO datetime (naive means UTC), as written: only
    its syntax is checked (`parse_when` checks its range too)."""
    value = text.strip()
    try:
        if _DATE.match(value):
            return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: write 2026-01-31 (UTC) or 2026-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_when(text: str) -> float:
    """A UTC date (``2026-01-31``) or an ISO datetime (naive means UTC) as Unix seconds,
    fractions kept: range ends are rounded by one rule, in `Range.bounds`. A moment
    before `EARLIEST` raises `ValueError`, as a malformed one does."""
    return not_too_early(read_when(text), text)


def not_too_early(moment: datetime, text: str) -> float:
    """`moment` (as `text` wrote it) as Unix seconds; `ValueError` before `EARLIEST`."""
    if moment < EARLIEST:
        raise ValueError(
            f"{text.strip()!r} is before {EARLIEST:%Y-%m-%d} UTC, the earliest date the collector "
            "accepts (the Devin API holds nothing older): write a date from then on"
        )
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Range:
    """``[since, until)`` at `now`: each target fetches the windows (or buckets) of its own
    calendar that overlap it, snapped to boundaries by the one rounding rule (`floor` and
    `ceil`, as `count` counts), and never one that has not started at `now`."""

    since: float
    until: float
    now: float

    @classmethod
    def up_to_now(cls, since: float, until: float, size: int, now: float) -> tuple[Range, bool]:
        """The range, its end clamped to the end of the open window of `size` at `now`: a
        window that has not started is never fetched (its zeros would read as truth).
        Returns the range and whether `until` was clamped."""
        sessions = windows(size)
        open_end = sessions.at(now).end
        if sessions.floor(since) >= open_end:
            raise ValueError("--since is in the future: there is nothing to fetch yet")
        if sessions.ceil(min(until, open_end)) <= sessions.floor(since):
            raise ValueError(
                "the date range is empty or the wrong way round: --since must come "
                "before --until"
            )
        return cls(since, min(until, open_end), now), until > open_end

    def bounds(self, calendar: Calendar) -> tuple[int, int]:
        """The first start and the last end of `calendar`'s buckets in the range: up to
        `now` (or past it) takes the open bucket, even in the instant it starts."""
        open_end = calendar.at(self.now).end
        end = open_end if self.until >= self.now else calendar.ceil(self.until)
        return calendar.floor(self.since), max(end, calendar.floor(self.since))

    def windows_of(self, target: Target) -> int:
        start, end = self.bounds(target.calendar)
        return target.calendar.count(start, end)


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
    claims: Claims | None,
    force: bool = False,
    on_skip: Callable[[int], None] | None = None,
    on_held: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    patience: float = 60.0,
) -> Iterator[Work]:
    """The work still to do, a slice at a time per target (a day of windows, or the buckets
    of one request), targets taking turns window by window.

    A window is skipped when the ledger does not hold it as due (the daemon's rule,
    `due_clause`: settled, or collected and not yet due again) or another process holds
    it. With `claims`, the rest are claimed just before they are handed out; without, the
    plan only reads (a dry run). With `force`, settled windows are fetched again too.
    Buckets of a source that answers many a call are merged into requests (`chunks`).

    Windows another process held when their turn came are asked for again at the end,
    every `RETAKE_EVERY` seconds for up to `patience` seconds (at most this backfill's own
    lease): the holder may give them back unfetched. Those still held then are left to
    their holder, counted by `on_held`; the others are skipped or fetched as usual."""
    held: list[tuple[Target, list[Window]]] = []
    take = partial(_take, store, clock=clock, claims=claims, on_skip=on_skip, held=held)
    slices = [_slices(target, span, take=partial(take, force=force)) for target in targets]
    while slices:
        step = []
        for target_slices in list(slices):
            work = next(target_slices, None)
            if work is None:
                slices.remove(target_slices)
            else:
                step.append(work)
        # targets take turns window by window, so every token has work at every moment
        for pairs in zip_longest(*step):
            yield from (pair for pair in pairs if pair is not None)
    # Windows another process held when their turn came: it fetched them, or gave them
    # back unfetched (a daemon's run defers what its deadline does not reach). Ask again
    # until none is held, for as long as a claim of this backfill would hold at most.
    if not held or claims is None:
        return
    deadline = clock() + min(claims.lease, patience)
    while True:
        again = held.copy()
        held.clear()
        for target, windows_ in again:
            yield from chunks(target, take(target, windows_, force=False))
        if not held:
            return
        if clock() >= deadline:
            if on_held is not None:
                on_held(sum(len(windows_) for _, windows_ in held))
            return
        sleep(RETAKE_EVERY)


def _slices(
    target: Target, span: Range, *, take: Callable[[Target, list[Window]], list[Window]]
) -> Iterator[list[Work]]:
    """`target`'s work in `span`, one slice at a time, each taken (`_take`) when reached."""
    calendar = target.calendar
    first, last = span.bounds(calendar)
    per_slice = target.timing.per_call if target.source.bucketed else 0
    buckets = calendar.between(first, last)
    while True:
        if per_slice:
            piece = list(islice(buckets, per_slice))
        else:  # windows of a fixed size: a day of them (at least one)
            head = next(buckets, None)
            if head is None:
                return
            day_end = head.start + DAY
            piece = [head, *_through(buckets, day_end)] if head.end < day_end else [head]
        if not piece:
            return
        yield list(chunks(target, take(target, piece)))


def _through(buckets: Iterator[Window], end: int) -> list[Window]:
    """The next buckets of `buckets`, up to the one that ends at or after `end`."""
    taken = []
    for bucket in buckets:
        taken.append(bucket)
        if bucket.end >= end:
            break
    return taken


def _take(
    store: Store,
    target: Target,
    windows_: list[Window],
    *,
    clock: Clock,
    claims: Claims | None,
    force: bool,
    on_skip: Callable[[int], None] | None,
    held: list[tuple[Target, list[Window]]],
) -> list[Window]:
    """The windows of `windows_` still to fetch, claimed with `claims`; those another
    process holds go to `held`, to be asked for again."""
    now = clock()
    interval = target.timing.interval
    waiting: set[int] = set()
    if claims is not None:
        taken, waiting = store.claim_or_held(
            target, windows_, owner=claims.owner, now=now, cutoff=now,
            lease=claims.lease, interval=interval, force=force,
        )
        if waiting:
            held.append((target, [w for w in windows_ if w.start in waiting]))
    else:
        taken = {w.start for w in windows_} - store.not_due_starts(
            target, windows_[0].start, windows_[-1].end, now=now, cutoff=now,
            interval=interval, force=force,
        )
    skipped = len(windows_) - len(taken) - len(waiting)
    if skipped and on_skip is not None:
        on_skip(skipped)
    return [window for window in windows_ if window.start in taken]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Windows in the range, windows still to fetch, the requests that takes (a request
    covers many buckets of a source that answers many a call), and how long at the rate."""

    windows: int
    todo: int
    requests: int
    seconds: float


def estimate(
    store: Store,
    targets: Sequence[Target],
    span: Range,
    *,
    now: float,
    force: bool,
    tokens: Mapping[str, str],
    rates: Mapping[str, float],
) -> Estimate:
    """How many windows the range holds, how many requests the backfill would make, and how
    long they take at each token's rate. `tokens` maps org ids to what identifies their
    token (orgs sharing a token share its limit), `rates` those to requests per second."""
    per_token: dict[str, int] = {}
    requests = todo = 0

    def add(target: Target, calls: int, windows_: int) -> None:
        nonlocal requests, todo
        requests += calls
        todo += windows_
        key = tokens.get(target.org_id, "")
        per_token[key] = per_token.get(key, 0) + calls

    bucketed: list[Target] = []
    for target in targets:
        if target.source.bucketed:
            bucketed.append(target)
            continue
        # a source of fixed windows makes a request per window still due: counted in the
        # ledger (the plan's own skip rule), not walked (eleven years of 5-minute windows
        # is a million)
        first, last = span.bounds(target.calendar)
        due = target.calendar.count(first, last) - store.count_not_due(
            target, first, last, now=now, cutoff=now, interval=target.timing.interval,
            force=force)
        add(target, due, due)
    # buckets merge into requests (`chunks`) around the ones done: walked
    for target, window in plan(store, bucketed, span, clock=lambda: now, claims=None,
                               force=force):
        add(target, 1, target.calendar.count(window.start, window.end))
    seconds = max((n / rates.get(key, 1.0) for key, n in per_token.items()), default=0.0)
    total = sum(span.windows_of(target) for target in targets)
    return Estimate(total, todo, requests, math.ceil(seconds))
