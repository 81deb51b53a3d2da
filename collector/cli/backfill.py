"""`collector backfill`: load history through the daemon's collection path."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from collector.cli.support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
    print_report,
)
from collector.errors import ConfigError
from collector.windows import DAY, format_duration

if TYPE_CHECKING:
    from collector.config import Config
    from collector.outcomes import Outcome

log = logging.getLogger("collector.backfill")


class Reporter:
    """A progress bar on a terminal; a log line every `every` seconds otherwise."""

    def __init__(self, total: int, *, interactive: bool, every: float = 10.0) -> None:
        self.total = total
        self.done = 0
        self.every = every
        self.started = time.monotonic()
        self._last = self.started
        self._lock = threading.Lock()  # workers' skips and the writer's batches both count
        self._bar: Any = None
        if interactive:
            self._bar, self._task = _progress_bar(total)

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self._bar is not None:
                self._bar.update(self._task, advance=count)
                return
            now = time.monotonic()
            if now - self._last < self.every:
                return
            self._last = now
            done = self.done
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else float("inf")
        log.info(
            "backfill: %d/%d windows (%.1f/s, ETA %s)", done, self.total, rate,
            "?" if eta == float("inf") else format_duration(max(1, int(eta))),
            extra={"done": done, "total": self.total, "rate": round(rate, 1)},
        )

    def saved(self, batch: Sequence[Outcome]) -> None:
        self.advance(len(batch))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@click.command()
@click.option("--since", required=True, help="First day (UTC date or ISO datetime).")
@click.option("--until", default=None, help="End, exclusive (default: now).")
@click.option("--org", "orgs", multiple=True, help="Only this org (repeatable).")
@click.option(
    "--segment", "segments", multiple=True,
    help='Only this segment (repeatable; "all" is the whole org).',
)
@click.option("--force", is_flag=True, help="Fetch settled windows again too.")
@click.option("--dry-run", is_flag=True, help="Print what would be fetched, and how long it takes.")
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=None,
    help="Requests in flight (default: [api].concurrency).",
)
@pass_context
def backfill(
    obj: Context,
    since: str,
    until: str | None,
    orgs: tuple[str, ...],
    segments: tuple[str, ...],
    force: bool,
    dry_run: bool,
    concurrency: int | None,
) -> None:
    """Load history from --since to --until: resumable, and safe beside a running daemon.

    Windows already settled are skipped (unless --force), and so are windows collected and
    not yet due again, so re-running after an interruption fetches only what is missing.
    """
    from collector import backfill as bf
    from collector.assembly import open_collector, open_store
    from collector.ledger import claim_owner, owner_alive
    from collector.targets import targets_from_config

    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        size = config.windows.size
        try:
            start = bf.parse_when(since)
            end = bf.parse_when(until) if until else now
            span, clamped = bf.Range.up_to_now(start, end, size, now)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if clamped:
            click.echo(
                f"--until {until} is in the future: the backfill stops at the end of the open "
                f"window, {_when(span.until)}", err=True,
            )
        unknown = sorted(set(orgs) - {o.id for o in config.orgs})
        if unknown:
            raise ConfigError(f"--org {', '.join(unknown)}: not in the configuration")
        known = {"all"} | {s.name for o in config.orgs for s in o.segments}
        unknown = sorted(set(segments) - known)
        if unknown:
            raise ConfigError(f"--segment {', '.join(unknown)}: no such segment is configured")
        targets = targets_from_config(config, orgs, segments)
        interval = config.schedule.interval
        if dry_run:
            with open_store(config, writable=False) as store:
                est = bf.estimate(
                    store, targets, span, now=now, interval=interval, force=force,
                    tokens=_token_keys(config, obj.env),
                    rate_limit=config.api.rate_limit,
                )
            click.echo(
                f"{len(targets)} target(s) x {span.windows_per_target} windows = "
                f"{est.windows} windows; {est.windows - est.requests} already done; "
                f"{est.requests} request(s) to make, about "
                f"{format_duration(int(est.seconds)) if est.seconds else '0s'} at "
                f"{config.api.rate_limit:g} request(s)/s per token"
            )
            sys.exit(EXIT_OK)
        workers = concurrency or config.api.concurrency
        org_ids = sorted({t.org_id for t in targets})
        with open_collector(config, obj.env, org_ids=org_ids, concurrency=workers) as collector:
            store = collector.store
            store.release_orphans(now, owner_alive)  # claims of a backfill that was killed
            claims = bf.Claims(claim_owner("backfill"), _lease(config, size))
            reporter = Reporter(
                span.windows_per_target * len(targets), interactive=sys.stderr.isatty()
            )
            try:
                report = collector.collect(
                    bf.plan(store, targets, span, clock=time.time, interval=interval,
                            claims=claims, force=force, on_skip=reporter.advance),
                    concurrency=workers,
                    on_saved=reporter.saved,
                    owner=claims.owner,
                )
            finally:
                reporter.close()
                store.release(claims.owner)
    print_report(report, "backfill")
    if not report.complete:
        click.echo("Run the same command again to resume: it fetches only what is missing.",
                   err=True)
    sys.exit(EXIT_OK if report.complete else EXIT_PARTIAL)


def _token_keys(config: Config, env: Mapping[str, str]) -> dict[str, str]:
    """What identifies each org's token for the estimate: the token itself when it is set
    (two variables holding one token share one rate limit), else the variable's name."""
    keys = {}
    for org in config.orgs:
        name = config.token_env_for(org)
        keys[org.id] = env.get(name, "").strip() or f"${name}"
    return keys


def _lease(config: Config, size: int) -> float:
    """How long a backfill's claim holds: a day of windows at the rate limit, then the
    requests in flight (a read timeout each, twice for a retry)."""
    day = max(size, DAY) // size
    return day / config.api.rate_limit + 2 * config.api.timeout + 60


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


def _progress_bar(total: int) -> tuple[Any, Any]:
    """A rich progress bar on stderr (rich is imported only when there is a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} windows/s")

    bar = Progress(
        TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), Rate(),
        TimeRemainingColumn(), console=Console(stderr=True),
    )
    task = bar.add_task("backfill", total=total)
    bar.start()
    return bar, task
