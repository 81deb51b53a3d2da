"""`collector backfill`: load history through the daemon's collection path."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from collector.cli.support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
    print_report,
    when,
)
from collector.client import AUTO_START
from collector.errors import ConfigError, StorageError
from collector.windows import DAY, for_people

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from collector.config import Config, OrgConfig
    from collector.outcomes import Outcome

log = logging.getLogger("collector.backfill")

#: Windows written per transaction. Each transaction also recomputes the daily rollups of
#: the days it touched, a cost per batch: larger batches than the daemon's spend less CPU a
#: window, and what is fetched is still saved within a second when it trickles in.
BATCH = 250


class Reporter:
    """A progress bar on a terminal (stderr); a log line every `every` seconds otherwise."""

    #: The bar is redrawn at most this often (seconds).
    REDRAW = 0.1

    def __init__(self, total: int, *, interactive: bool, every: float = 10.0) -> None:
        self.total = total
        self.done = 0
        self.every = every
        self.started = time.monotonic()
        self._last = self.started
        self._lock = threading.Lock()  # workers' skips and the writer's batches both count
        self._bar: ProgressBar[str | None] | None = None
        self._stack = ExitStack()
        if interactive:
            self._bar = self._stack.enter_context(click.progressbar(
                length=total, label="backfill", show_pos=True, show_percent=True,
                item_show_func=lambda item: item, width=0, file=sys.stderr,
            ))

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if self._bar is not None:
                if now - self._last >= self.REDRAW:
                    self._last = now
                    self._draw(now)
                return
            if now - self._last < self.every:
                return
            self._last = now
            done = self.done
        rate = self._rate(done, now)
        eta = (self.total - done) / rate if rate else float("inf")
        log.info(
            "backfill: %d/%d windows (%.1f/s, ETA %s)", done, self.total, rate,
            "?" if eta == float("inf") else for_people(max(1, int(eta))),
            extra={"done": done, "total": self.total, "rate": round(rate, 1)},
        )

    def saved(self, batch: Sequence[Outcome]) -> None:
        self.advance(len(batch))

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._draw(time.monotonic())
            self._stack.close()

    def _draw(self, now: float) -> None:
        """Bring the bar to `done`, with the rate so far (called under the lock)."""
        assert self._bar is not None
        rate = self._rate(self.done, now)
        self._bar.update(self.done - self._bar.pos, f"{rate:,.0f} windows/s")

    def _rate(self, done: int, now: float) -> float:
        """Windows per second since the start."""
        return done / max(now - self.started, 1e-9)


@click.command()
@click.option("--since", required=True, help="First day (UTC date or ISO datetime).")
@click.option("--until", default=None, help="End, exclusive (default: now).")
@click.option("--org", "orgs", multiple=True, help="Only this org (repeatable).")
@click.option(
    "--segment", "segments", multiple=True,
    help='Only this segment (repeatable; "all" is the whole org).',
)
@click.option(
    "--source", "sources", multiple=True,
    help="Only this source (repeatable): sessions, prs, searches, active_users, consumption.",
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
    sources: tuple[str, ...],
    force: bool,
    dry_run: bool,
    concurrency: int | None,
) -> None:
    """Load history from --since to --until: resumable, and safe beside a running daemon.

    Windows already settled are skipped (unless --force), and so are windows collected and
    not yet due again, so re-running after an interruption fetches only what is missing.
    """
    from collector import backfill as bf
    from collector.assembly import known_orgs, open_collector, open_store
    from collector.ledger import claim_owner, owner_alive
    from collector.targets import targets_from_config

    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        size = config.windows.size
        try:
            start = bf.parse_when(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
        try:
            end = bf.parse_when(until) if until else now
        except ValueError as exc:
            raise ConfigError(f"--until: {exc}") from None
        try:
            span, clamped = bf.Range.up_to_now(start, end, size, now)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if clamped:
            click.echo(
                f"--until {until} is in the future: the backfill stops at the end of the open "
                f"window, {when(int(span.until))}", err=True,
            )
        unknown = sorted(set(orgs) - {o.id for o in config.orgs})
        if unknown and config.discovery is None:
            raise ConfigError(f"--org {', '.join(unknown)}: not in the configuration")
        known = {"all"} | {s.name for o in config.orgs for s in o.segments}
        unknown = sorted(set(segments) - known)
        if unknown:
            raise ConfigError(f"--segment {', '.join(unknown)}: no such segment is configured")
        off = sorted(set(sources) - set(config.sources.enabled))
        if off:
            raise ConfigError(
                f"--source {', '.join(off)}: not an enabled source; the enabled sources are "
                f"{', '.join(config.sources.enabled)} ([sources].enabled)"
            )
        if dry_run:
            with open_store(config, writable=False) as store:
                every = known_orgs(config, store)
                targets = targets_from_config(config, orgs, segments, sources, orgs=every)
                keys = _token_keys(config, every, obj.env)
                rates, how = _rates(config, every, keys, store.learned_rates())
                est = bf.estimate(store, targets, span, now=now, force=force, tokens=keys,
                                  rates=rates)
            used = sorted({rates[keys[t.org_id]] for t in targets}) or [AUTO_START]
            speed = f"{used[0]:g}" if len(used) == 1 else f"{used[0]:g}-{used[-1]:g}"
            click.echo(
                f"{len(targets)} target(s): {est.windows} windows; "
                f"{est.windows - est.todo} already done; {est.todo} to fetch in "
                f"{est.requests} request(s), about "
                f"{for_people(int(est.seconds))} at "
                f"{speed} request(s)/s per token ({how})"
            )
            sys.exit(EXIT_OK)
        workers = concurrency or config.api.concurrency
        org_ids = sorted(set(orgs) & {o.id for o in config.orgs})
        with open_collector(config, obj.env, org_ids=org_ids, concurrency=workers) as collector:
            targets = targets_from_config(config, orgs, segments, sources, orgs=collector.orgs)
            total = sum(span.windows_of(t) for t in targets)
            store = collector.store
            store.release_orphans(now, owner_alive)  # claims of a backfill that was killed
            # a day of every target is claimed at once: the lease covers them all
            claims = bf.Claims(claim_owner("backfill"), _lease(config, size) * len(targets))
            reporter = Reporter(total, interactive=sys.stderr.isatty())
            left: list[int] = []

            def leave(count: int) -> None:
                left.append(count)
                reporter.advance(count)

            try:
                report = collector.collect(
                    bf.plan(store, targets, span, clock=time.time, claims=claims,
                            force=force, on_skip=reporter.advance, on_held=leave),
                    concurrency=workers,
                    batch_size=BATCH,
                    on_saved=reporter.saved,
                    owner=claims.owner,
                )
            finally:
                reporter.close()
                try:
                    store.release(claims.owner)
                    store.save_rates(collector.client.rates(learned_only=True), time.time())
                except StorageError as exc:  # the run's own outcome is what to report
                    log.warning("%s; the claims expire by themselves", exc)
    print_report(report, "backfill", forced=force)
    if left:
        click.echo(f"{sum(left)} window(s) of the range are held by another process (a daemon "
                   "or another backfill) that is fetching them; `collector status` shows when "
                   "they are in.", err=True)
    if not report.complete:
        click.echo("Run the same command again to resume: it fetches only what is missing."
                   if not force else "Run it again without --force to fetch only what is "
                   "still missing; with --force it fetches the whole range again.", err=True)
    sys.exit(EXIT_OK if report.complete else EXIT_PARTIAL)


def _token_keys(
    config: Config, orgs: Sequence[OrgConfig], env: Mapping[str, str]
) -> dict[str, str]:
    """What identifies each org's token for the estimate: the token itself when it is set
    (two variables holding one token share one rate limit), else the variable's name."""
    keys = {}
    for org in orgs:
        keys[org.id] = env.get(config.token_env_for(org), "").strip() or config.token_label(org)
    return keys


def _rates(
    config: Config, orgs: Sequence[OrgConfig], keys: Mapping[str, str],
    learned: Mapping[str, tuple[float, int]],
) -> tuple[dict[str, float], str]:
    """Per token key (`_token_keys`), the rate the token is expected to run at, and where
    that figure comes from: the configured `[api].rate_limit`, what the last run learned
    (capped by it), or the rate a new token starts at. Orgs whose tokens have one key share
    one rate: the learned one when a run learned it under any of their variables."""
    ceiling = None if config.api.rate_limit == "auto" else config.api.rate_limit
    by_key: dict[str, float] = {}
    whens = []
    for org in orgs:
        found = learned.get(config.token_label(org))
        if found is not None:
            by_key[keys[org.id]] = found[0] if ceiling is None else min(found[0], ceiling)
            whens.append(found[1])
        else:
            by_key.setdefault(keys[org.id], ceiling or AUTO_START)
    if whens:
        how = f"learned by the last run, {when(max(whens))}"
    elif ceiling is not None:
        how = "[api].rate_limit"
    else:
        how = (f"not learned yet: a new token starts at {AUTO_START:g}/s and speeds up as "
               "far as the API allows, so the backfill is likely faster")
    return by_key, how


def _lease(config: Config, size: int) -> float:
    """How long a backfill's claim holds: a day of windows at the slowest rate a token may
    run at, then the requests in flight (a read timeout each, twice for a retry)."""
    day = max(size, DAY) // size
    ceiling = AUTO_START if config.api.rate_limit == "auto" else config.api.rate_limit
    return day / min(ceiling, AUTO_START) + 2 * config.api.timeout + 60
