"""`collector run`: every org polled on an APScheduler interval, the ledger deciding what.

One job per org, in UTC, with jitter so orgs do not fire together; `max_instances=1` and
`coalesce=True` so a slow run is never stacked, and a misfire grace as long as the interval.
Each run has a deadline, so a hung request cannot block later runs. The scheduler keeps no
state of its own (memory job store): what is done lives in the ledger, so a restart resumes
exactly where the last run left off.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from collector.assembly import Collector
from collector.collection import Report, Work
from collector.errors import ConfigError, StorageError
from collector.ledger import claim_owner
from collector.outcomes import Failed
from collector.planner import plan, slack
from collector.prometheus import Metrics
from collector.targets import Target, chunks, targets_from_config
from collector.throttle import Clock

log = logging.getLogger("collector.daemon")


@contextmanager
def sqlite_single_daemon(engine: Engine) -> Iterator[None]:
    """On SQLite, hold an exclusive lock beside the database file for the daemon's lifetime:
    a second daemon on the same file refuses to start. The operating system drops the lock
    with the process, however it ends. PostgreSQL needs none: daemons share work by claims.
    A backfill does not take this lock, so it can run beside a daemon."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(f"{database}.daemon.lock")
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"another `collector run` ({holder}) is already using {database}: SQLite takes "
                "one daemon per database file. Stop it first, or move to PostgreSQL to run "
                "several daemons (a `collector backfill` beside one daemon is fine)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


@dataclass
class RunTally:
    """What a run planned for an org, and how many of those windows another process held,
    by source name."""

    planned: Counter[str] = field(default_factory=Counter)
    elsewhere: Counter[str] = field(default_factory=Counter)

    def deferred(self, report: Report) -> Counter[str]:
        """Per source, what was due here and neither collected nor failed: not reached
        before the deadline, held back by the rate limit, or left at shutdown."""
        left = self.planned - self.elsewhere
        left.subtract(report.done)
        return +left


class Daemon:
    """Runs collection for each org on a schedule; `run_org` is one run, callable directly."""

    def __init__(
        self,
        collector: Collector,
        *,
        clock: Clock = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.collector = collector
        self.config = config = collector.config
        self.store = collector.store
        self.clock = clock
        self.metrics = metrics
        self.policy = collector.policy
        schedule = config.schedule
        self.interval = schedule.interval
        self.jitter = schedule.jitter
        self.horizon = schedule.catchup_horizon
        self.run_deadline = schedule.deadline
        self.grace = schedule.shutdown_grace
        #: A claim outlives a run that was cut short: the run deadline, then requests in
        #: flight (a read timeout each, twice for a retry). After that, others take over.
        self.lease = self.run_deadline + 2 * config.api.timeout
        self.owner = claim_owner("run")
        self.claim_batch = 2 * config.api.concurrency
        self.size = config.windows.size
        self.stopping = threading.Event()
        self._targets: dict[str, list[Target]] = {}
        self._set_targets()
        #: (org, source family) -> until when it rests after an access error; the family is
        #: "" when the whole org rests (a bad token or org id), else a missing permission.
        self._resting_until: dict[tuple[str, str], float] = {}
        self._active = 0
        self._idle = threading.Condition()

    # -- one run ---------------------------------------------------------------------------

    def targets(self, org_id: str, now: float | None = None) -> list[Target]:
        """The targets of `org_id`, less the sources resting after a 403 at `now`."""
        now = self.clock() if now is None else now
        return [t for t in self._targets.get(org_id, [])
                if self._resting_until.get((org_id, t.source.config_name), 0.0) <= now]

    def work_for(
        self, org_id: str, now: float, owner: str, tally: RunTally | None = None
    ) -> Iterator[Work]:
        """The (target, window) pairs due for `org_id` at `now`, claimed as they are taken,
        targets in turns, each target's windows in the planner's order (open window,
        re-polls, then gaps newest first).

        Windows are claimed a few at a time, just before they are fetched, so daemons
        running the same org at once split its windows between them, and a daemon that
        dies holds only a handful of claims when it goes. `tally` counts what was planned
        and what others had claimed."""
        tally = tally if tally is not None else RunTally()
        plans = []
        for target in self.targets(org_id, now):
            calendar, interval = target.calendar, target.timing.interval
            since = calendar.floor(now - self.horizon)  # where the planner's horizon starts
            cutoff = now + slack(self.interval)  # how early a run may take a due window
            due, known = self.store.plan_inputs(
                target, now=now, cutoff=cutoff, since=since, interval=interval
            )
            windows = plan(now, calendar, due, known, self.horizon)
            tally.planned[target.source.name] += len(windows)
            plans.append((target, windows, cutoff))
        step = self.claim_batch
        for offset in itertools.count(0, step):
            batches = [(t, windows[offset : offset + step], c) for t, windows, c in plans]
            if not any(batch for _, batch, _ in batches):
                return
            for target, batch, cutoff in batches:
                if not batch:
                    continue
                claimed = self.store.claim(
                    target, batch, owner=owner, now=self.clock(), cutoff=cutoff,
                    lease=self.lease, interval=target.timing.interval,
                )
                tally.elsewhere[target.source.name] += len(batch) - len(claimed)
                yield from chunks(target, (w for w in batch if w.start in claimed))

    def run_org(self, org_id: str) -> Report | None:
        """One run for one org. Returns None when the org is resting or the daemon stops."""
        with self._idle:  # counted before the check, so `wait_idle` cannot miss this run
            self._active += 1
        try:
            if self.stopping.is_set():
                return None
            now = self.clock()
            resting = self._resting_until.get((org_id, ""), 0.0)
            if now < resting:
                log.info("org %s rests after an access error until %s", org_id,
                         datetime.fromtimestamp(resting, UTC).isoformat(timespec="seconds"))
                return None
            return self._run(org_id, now)
        except StorageError as exc:
            log.error("run for org %s failed: %s", org_id, exc)
            return None
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(self, org_id: str, now: float) -> Report:
        tally = RunTally()
        # Each run claims under a name of its own: runs of other orgs in this process end
        # their own claims, never this one's.
        owner = f"{self.owner}:{org_id}:{uuid.uuid4().hex[:6]}"
        metrics = self.metrics
        try:
            report = self.collector.collect(
                self.work_for(org_id, now, owner, tally),
                clock=self.clock,
                # one window a transaction: a daemon killed mid-run loses only what is in
                # flight, and the daemon's volume makes the extra commits cheap
                batch_size=1,
                deadline=time.monotonic() + self.run_deadline,
                stop=self.stopping.is_set,
                on_saved=(lambda batch: metrics.saved(batch, self.clock())) if metrics else None,
                owner=owner,
            )
        finally:
            try:
                self.store.release(owner)
                self.store.save_rates(
                    self.collector.client.rates(learned_only=True), self.clock()
                )
            except StorageError as exc:
                log.warning("%s; they expire by themselves within %ss", exc, self.lease)
        # What was due here and not done is deferred: not reached before the deadline, held
        # back by the rate limit, or left at shutdown. It stays due, and is not a failure.
        deferred = tally.deferred(report)
        self._rest(org_id, now, [f for f in report.failed if f.access_denied])
        fields = {
            "org": org_id,
            "due": (tally.planned - tally.elsewhere).total(),
            "collected": report.collected,
            "failed": report.failed_count,
            "deferred": deferred.total(),
            "duration_s": round(report.duration, 2),
        }
        log.log(logging.INFO if report.ok else logging.WARNING, "run", extra=fields)
        others = [f for f in report.failed if not f.access_denied]
        for failure in others[:5]:
            log.warning(
                "window failed: %s", failure.error,
                extra={"target": str(failure.target), "window": str(failure.window)},
            )
        if metrics:
            metrics.run_duration.labels(org_id).observe(report.duration)
            for label, rate in self.collector.client.rates().items():
                metrics.rate.labels(label).set(rate)
            for source, count in deferred.items():
                metrics.deferred(org_id, source, count)
        return report

    def _rest(self, org_id: str, now: float, denied: list[Failed]) -> None:
        """Rest what an access error refused, once logged per run: the org (a bad token or
        org id), or the one source a missing permission refuses while the others go on."""
        for key in [k for k in self._resting_until if k[0] == org_id]:
            if self._resting_until[key] <= now:
                del self._resting_until[key]
        until = now + self.policy.access_error_backoff
        by_key: dict[tuple[str, str], list[Failed]] = {}
        for failure in denied:
            family = failure.target.source.config_name if failure.forbidden else ""
            by_key.setdefault((org_id, family), []).append(failure)
        for key, failures in by_key.items():
            self._resting_until[key] = until
            what = f"source {key[1]} of the org" if key[1] else "the org"
            log.error(
                "%s; %s rests until %s", failures[0].error, what,
                datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
                extra={"org": org_id, "windows": len(failures)},
            )

    # -- the scheduler ---------------------------------------------------------------------

    def _set_targets(self) -> None:
        targets: dict[str, list[Target]] = {}
        for target in targets_from_config(self.config, orgs=self.collector.orgs):
            targets.setdefault(target.org_id, []).append(target)
        self._targets = targets

    def sync_orgs(self, scheduler: BackgroundScheduler | None = None) -> tuple[list[str],
                                                                               list[str]]:
        """Discovery, now: orgs that appeared get a job (a new org is caught up over the
        catch-up horizon by its first runs), orgs that are gone lose theirs and keep their
        data. Returns the ids added and removed."""
        added, removed = self.collector.refresh_orgs()
        self._set_targets()
        if scheduler is not None:
            for org_id in removed:
                if scheduler.get_job(org_id) is not None:
                    scheduler.remove_job(org_id)
            start = datetime.now(UTC)
            for org_id in added:
                self._add_org_job(scheduler, org_id, start)
        return added, removed

    def _add_org_job(self, scheduler: BackgroundScheduler, org_id: str, first: datetime) -> None:
        scheduler.add_job(
            self.run_org,
            IntervalTrigger(seconds=self.interval, jitter=self.jitter or None, timezone=UTC),
            args=[org_id],
            id=org_id,
            name=f"collect {org_id}",
            next_run_time=first,
        )

    def scheduler(self) -> BackgroundScheduler:
        """A scheduler with one interval job per org, first runs spread over the jitter, and
        with `[discovery]`, a job that lists the organizations every `refresh`."""
        orgs = list(self._targets)
        discovery = self.config.discovery
        # threads are started as runs need them: room for the orgs discovery may add
        workers = max(1, len(orgs)) if discovery is None else max(64, len(orgs))
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.interval,
            },
        )
        start = datetime.now(UTC)
        spread = min(self.jitter, self.interval) / max(1, len(orgs))
        for index, org_id in enumerate(orgs):
            self._add_org_job(scheduler, org_id, start + timedelta(seconds=index * spread))
        if discovery is not None:
            scheduler.add_job(
                self.sync_orgs,
                IntervalTrigger(seconds=discovery.refresh, timezone=UTC),
                args=[scheduler],
                id="@discovery",
                name="discover organizations",
                next_run_time=start + timedelta(seconds=discovery.refresh),
            )
        return scheduler

    def serve(self) -> bool:
        """Run until SIGTERM or SIGINT. Returns False if runs were still in flight when the
        shutdown grace period ended (their uncommitted writes are rolled back)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        scheduler = self.scheduler()
        scheduler.start()
        log.info(
            "collector running",
            extra={"orgs": len(self._targets), "window_s": self.size,
                   "interval_s": self.interval},
        )
        # Wait in short steps: a signal the kernel delivers to another thread only sets a
        # flag, and Python runs the handler when the main thread next wakes up.
        while not self.stopping.wait(0.5):
            pass
        log.info("stopping: no new work; waiting up to %ss for runs in flight", self.grace)
        scheduler.shutdown(wait=False)
        return self.wait_idle(self.grace)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stopping.set()
