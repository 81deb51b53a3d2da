"""The collection step: fetch (target, window) pairs, then store the outcomes.

The daemon, `collect` and `backfill` all call `run_collection`; they differ only in which
pairs they hand it. Fetches run on `concurrency` worker threads that pull pairs from the plan
(the client enforces the rate limit); outcomes are written by the calling thread in batches,
each batch one transaction. The plan is consumed lazily, so a plan of millions of windows
costs no memory up front.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from collector.client import DevinClient
from collector.config import Config
from collector.errors import AccessError, ApiError, DeferredError, StorageError
from collector.handoff import Feed, Outbox
from collector.outcomes import Collected, Deferred, Failed, Outcome
from collector.payload import Fetched
from collector.planner import after_success
from collector.store import Store
from collector.targets import Target
from collector.throttle import Clock
from collector.windows import Window

log = logging.getLogger("collector.collection")

Work = tuple[Target, Window]


@dataclass(frozen=True, slots=True)
class Policy:
    """How outcomes are scheduled beyond each target's own `Timing`: how long an org whose
    token or id is wrong rests before it is tried again, and whether open windows are due
    again at the target's interval (`refetch_open`; off, nothing is due before it closes)."""

    access_error_backoff: int = 3600
    refetch_open: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(config.schedule.access_error_backoff, refetch_open=True)


@dataclass
class Report:
    """What a run did: counts, and the first `keep` failures with their reasons.

    Deferred windows (not reached: deadline, rate limit, shutdown) are not failures; they
    stay due as they were."""

    collected: int = 0
    failed_count: int = 0
    deferred: int = 0
    #: Why the first deferred window was deferred.
    deferred_reason: str = ""
    failed: list[Failed] = field(default_factory=list)
    #: Windows collected or failed, by source name.
    done: Counter[str] = field(default_factory=Counter)
    keep: int = 1000
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def ok(self) -> bool:
        """No window failed (some may have been deferred)."""
        return self.failed_count == 0

    @property
    def complete(self) -> bool:
        """Every window asked for was collected."""
        return self.failed_count == 0 and self.deferred == 0

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def add(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Deferred):
                self.deferred += 1
                self.deferred_reason = self.deferred_reason or outcome.reason
                continue
            self.done[outcome.target.source.name] += 1
            if isinstance(outcome, Failed):
                self.failed_count += 1
                if len(self.failed) < self.keep:
                    self.failed.append(outcome)
            else:
                self.collected += 1


def run_collection(
    client: DevinClient,
    store: Store,
    work: Iterable[Work],
    *,
    policy: Policy,
    clock: Clock = time.time,
    concurrency: int = 4,
    batch_size: int = 50,
    flush_every: float = 1.0,
    deadline: float | None = None,
    stop: Callable[[], bool] | None = None,
    on_saved: Callable[[Sequence[Outcome]], None] | None = None,
    owner: str | None = None,
) -> Report:
    """Fetch every pair of `work` and store what came back. Never raises for one window.

    Outcomes are written `batch_size` at a time, or after `flush_every` seconds when they
    trickle in. `deadline` is a `time.monotonic` instant, and `stop` a flag polled between
    pairs; a write the database refuses stops the run the same way. Pairs not started by
    then are left for a later run (they stay due in the ledger) and are not reported as
    failures. Fetches in flight finish and are written before this returns. `owner` names the
    claims (see `Store.claim`) that writing the outcomes ends.
    """
    report = Report()
    blocked: dict[tuple[str, str], AccessError] = {}

    def fetch(target: Target, window: Window) -> list[Outcome]:
        """The outcomes of one request: one per window, or per bucket of `window` for a
        source that answers many buckets a call."""
        now = clock()
        buckets = _buckets(target, window)
        if window.start > now:
            # never store a window that has not started: its zeros would read as truth
            return [Deferred(target, b, "the window has not started yet") for b in buckets]
        known = blocked.get((target.org_id, "")) or blocked.get(
            (target.org_id, target.source.config_name))
        if known is not None:
            return [_failed(target, b, known, now) for b in buckets]
        try:
            fetched = client.fetch(target, window, deadline=deadline)
        except DeferredError as exc:
            if deadline is not None:
                halted.set()  # the rest of the plan cannot start in time either
            return [Deferred(target, b, str(exc), exc.attempts) for b in buckets]
        except ApiError as exc:
            if isinstance(exc, AccessError):
                blocked.setdefault(_access_key(target, exc), exc)
            return [_failed(target, b, exc, clock()) for b in buckets]
        ages = target.timing.repoll_ages
        interval = target.timing.interval if policy.refetch_open else 0
        parts = split(target, buckets, fetched) if target.source.bucketed else [(window, fetched)]
        outcomes: list[Outcome] = []
        for bucket, part in parts:
            next_due, settled = after_success(bucket, part.fetched_at, ages, interval)
            outcomes.append(Collected(target, bucket, part, next_due, settled))
        return outcomes

    def flush(batch: list[Outcome]) -> None:
        try:
            store.save(batch, owner)
        except StorageError as exc:
            # The database refuses writes (down, locked, full): fetching more would be
            # wasted. Stop taking pairs; the rest stay due for a later run.
            log.error("%s", exc)
            halted.set()
            batch = [_unsaved(o, exc, clock()) for o in batch]
        report.add(batch)
        if log.isEnabledFor(logging.DEBUG):
            for outcome in batch:
                _log_outcome(outcome)
        if on_saved is not None:
            on_saved(batch)

    # A plan thread walks the plan (its ledger reads and claims included) a little ahead of
    # the workers, so no worker waits on the database for its next pair; workers fetch and
    # hand outcomes to this thread, which writes them. Both hand-offs are bounded: a slow
    # database holds the fetching back instead of filling memory.
    halted = threading.Event()
    source = _until(
        iter(work), deadline, lambda: halted.is_set() or (stop is not None and stop())
    )
    pairs: Feed[Work] = Feed(high=2 * concurrency, low=concurrency)
    # room for a batch, and for what the workers fetch while the writer saves it
    outbox: Outbox[Outcome] = Outbox(concurrency, capacity=batch_size + 4 * concurrency)
    crashed: list[BaseException] = []

    def feeder() -> None:
        try:
            for item in source:
                if not pairs.put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 (re-raised in the calling thread)
            crashed.append(exc)
            halted.set()
        finally:
            pairs.end()

    def worker() -> None:
        try:
            while (item := pairs.get()) is not None:
                if halted.is_set() or (stop is not None and stop()):
                    continue  # taken from the plan, not started: it stays due
                outbox.put(fetch(*item))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the calling thread)
            crashed.append(exc)
            halted.set()
            pairs.close()
        finally:
            outbox.done()

    workers = [
        threading.Thread(target=worker, name=f"fetch-{i}", daemon=True)
        for i in range(concurrency)
    ]
    plan_thread = threading.Thread(target=feeder, name="plan", daemon=True)
    plan_thread.start()
    for thread in workers:
        thread.start()
    active = True
    try:
        while active:
            # what is fetched is saved within `flush_every`, also while no more comes (the
            # plan waits for windows another process holds, say)
            batch, active = outbox.take(batch_size, flush_every)
            if batch:
                flush(batch)
    finally:
        if active:  # something above raised: let the workers finish and leave
            halted.set()
            while outbox.take(1, None)[1]:
                pass
        pairs.close()
    for thread in workers:
        thread.join()
    plan_thread.join()
    report.finished = time.monotonic()
    if crashed:
        raise crashed[0]
    return report


def _until(
    work: Iterable[Work], deadline: float | None, stop: Callable[[], bool] | None
) -> Iterator[Work]:
    for item in work:
        if deadline is not None and time.monotonic() >= deadline:
            log.info("run deadline reached; the remaining windows stay due")
            return
        if stop is not None and stop():
            return
        yield item


def _buckets(target: Target, window: Window) -> list[Window]:
    if not target.source.bucketed:
        return [window]
    return list(target.calendar.between(window.start, window.end))


def _access_key(target: Target, exc: AccessError) -> tuple[str, str]:
    """What an access error blocks for the rest of a run: a missing permission, one source
    of the org (the others may be allowed); anything else (token, org id), the whole org."""
    return (target.org_id, target.source.config_name if exc.status == 403 else "")


def split(
    target: Target, buckets: list[Window], fetched: Fetched
) -> Iterator[tuple[Window, Fetched]]:
    """The buckets of one answer of a bucketed source, each with its values and JSON. A
    bucket of the request that the answer leaves out is stored as zero, with no raw body;
    buckets the answer has beyond the request are not stored."""
    source = target.source
    assert source.items is not None
    calendar = target.calendar
    found: dict[int, Fetched] = {}
    for item in source.items(fetched.metrics):
        start = calendar.floor(item.instant)
        found.setdefault(
            start, Fetched(item.values, item.body, fetched.fetched_at, fetched.attempts)
        )
    for bucket in buckets:
        if bucket.start > fetched.fetched_at:
            continue  # a bucket that has not started yet is never stored
        part = found.get(bucket.start)
        if part is None:
            assert source.empty is not None
            part = Fetched(source.empty(bucket), "null", fetched.fetched_at, fetched.attempts)
        yield bucket, part


def _failed(target: Target, window: Window, exc: ApiError, now: float) -> Failed:
    # Due again at once: an org whose token or id is wrong rests in the daemon (see
    # `Daemon`), not in the ledger, so a backfill run after the fix fetches it straight away.
    denied = isinstance(exc, AccessError)
    return Failed(target, window, str(exc), now, int(now), exc.attempts, access_denied=denied,
                  forbidden=denied and exc.status == 403)


def _unsaved(outcome: Outcome, exc: StorageError, now: float) -> Outcome:
    if isinstance(outcome, Failed | Deferred):
        return outcome
    return Failed(outcome.target, outcome.window, str(exc), now, int(now))


def _log_outcome(outcome: Outcome) -> None:
    if isinstance(outcome, Collected):
        log.debug(
            "window collected", extra={
                "target": str(outcome.target), "window": str(outcome.window),
                "attempts": outcome.fetched.attempts, "settled": outcome.settled,
            },
        )
    elif isinstance(outcome, Failed):
        log.debug(
            "window failed", extra={
                "target": str(outcome.target), "window": str(outcome.window),
                "attempts": outcome.attempts, "error": outcome.error,
            },
        )
    else:
        log.debug(
            "window deferred", extra={
                "target": str(outcome.target), "window": str(outcome.window),
                "reason": outcome.reason,
            },
        )
