"""`collector report`: one self-contained HTML page of what the database holds.

Read from the public views only (`queries`), shaped into sections of charts per scope
(`sections`), with the summary and data quality on top and at the end (`summary`), drawn as
SVG in Python (`charts`) inside a page with its CSS and script inline (`page`). Nothing is
fetched, neither when writing the page nor when it is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from collector.errors import ConfigError
from collector.report import page
from collector.report.queries import ALL, Reader
from collector.report.sections import charts, date_ticks, days, scopes
from collector.report.summary import Weeks, figures, quality
from collector.status import TargetStatus

if TYPE_CHECKING:
    from collector.config import Config
    from collector.store import Store

__all__ = ["Report", "Selection", "build_report", "day_range", "report_of"]

TITLE = "Devin usage report"
#: How far back a report reaches unless told (`--since`).
DEFAULT_SINCE = "90d"


@dataclass(frozen=True)
class Report:
    html: str
    orgs: tuple[str, ...]
    charts: int
    empty: bool
    first_day: date
    last_day: date


@dataclass(frozen=True)
class Selection:
    """What a report shows, as the command line names it: `since` and `until` are resolved
    at each rendering (a duration such as ``90d`` counts back from that moment's today)."""

    #: None: `DEFAULT_SINCE`, or from the first day with data when that is later
    since: str | None = None
    until: str | None = None
    orgs: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()


def build_report(
    engine: Engine,
    *,
    first_day: date,
    last_day: date,
    now: float,
    orgs: Sequence[str] = (),
    segments: Sequence[str] = (),
    statuses: Sequence[TargetStatus] | None = None,
) -> Report:
    """The report of `engine`'s database for the UTC days `first_day` to `last_day`
    (inclusive), as seen at `now`, narrowed to `orgs` and `segments` (``all``: the whole
    orgs) when given. `statuses` (from `collector.status.target_status`) add the failing
    windows to the data quality table. An org or segment named that the database does not
    know raises `ConfigError`."""
    if last_day < first_day:
        raise ConfigError(f"the range is empty: {first_day} is after {last_day}")
    today = datetime.fromtimestamp(now, UTC).date()
    weeks = Weeks.ending(last_day, today)
    wanted = tuple(segments)
    data = Reader(engine).read(first_day, last_day, tuple(orgs), weeks.previous[0])
    unknown = [o for o in orgs if o not in data.orgs]
    if unknown:
        raise ConfigError(f"--org: no data and no record of {', '.join(unknown)} in the "
                          "database")
    known = {s for _, s in data.segments()}
    missing = [s for s in wanted if s != ALL and s not in known]
    if missing:
        have = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"--segment: no data for {', '.join(missing)} between {first_day} "
                          f"and {last_day} (segments with data: {have})")
    slots = days(data)
    ticks = date_ticks(slots)
    sections, nav = [], [("summary", "Summary")]
    total_charts = 0
    for scope in scopes(data, wanted) if not data.empty else []:
        built = charts(data, scope)
        total_charts += len(built)
        body = "".join(page.figure(c, ticks if c.x_name == "day" else ()) for c in built)
        sections.append(f'<section id="{escape(scope.key)}" data-scope="{escape(scope.key)}">'
                        f'<h2>{escape(scope.title)}</h2><div class="grid">{body}</div>'
                        "</section>")
        nav.append((scope.key, scope.title))
    nav.append(("quality", "Data quality"))
    current = f"{weeks.current[0]} to {weeks.current[1]}"
    previous = f"{weeks.previous[0]} to {weeks.previous[1]}"
    if data.empty:
        head = (f'<p class="empty" id="empty">No data between {first_day} and {last_day}'
                f"{' for ' + ', '.join(orgs) if orgs else ''}. Collect some first: "
                "<code>collector collect</code>, <code>collector run</code> or "
                "<code>collector backfill --since DATE</code>.</p>")
    else:
        head = page.cards(figures(data, weeks, wanted), f"The 7 days {current}",
                          f"the 7 days {previous}")
    expected = max((min(last_day, today) - first_day).days + 1, 0)
    body = (f'<section id="summary"><h2>Summary</h2>{head}</section>{"".join(sections)}'
            f'<section id="quality"><h2>Data quality</h2>'
            f"{page.quality_table(quality(data, today, wanted, statuses), expected)}"
            "</section>")
    names = ", ".join(data.orgs) or "no organization"
    generated = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"{first_day} to {last_day} ({len(slots)} UTC days); {len(data.orgs)} "
                f"organization(s): {names}"
                + (f"; segments: {', '.join(wanted)}" if wanted else "")
                + f". Generated {generated}.")
    html = page.document(title=TITLE, subtitle=subtitle, nav=nav, body=body)
    return Report(html, tuple(data.orgs), total_charts, data.empty, first_day, last_day)


def report_of(config: Config, store: Store, selection: Selection, now: float) -> Report:
    """The report of `store`'s database as seen at `now`: the days of `selection` resolved
    then, and the ledger's status of the configured (and discovered) orgs read then, for
    the failing windows. What `collector report` writes, and serves on each load."""
    from collector.assembly import known_orgs
    from collector.status import target_status
    from collector.targets import targets_from_config

    first, last = day_range(selection.since, selection.until, now)
    if selection.since is None:
        # less history than that: the days with data fill the charts' width
        found = Reader(store.engine).first_day(selection.orgs)
        if found is not None and first < found <= last:
            first = found
    targets = targets_from_config(config, org_ids=selection.orgs,
                                  orgs=known_orgs(config, store))
    statuses = target_status(store, targets, now=now, horizon=config.schedule.catchup_horizon)
    return build_report(store.engine, first_day=first, last_day=last, now=now,
                        orgs=selection.orgs, segments=selection.segments, statuses=statuses)


def day_range(since: str | None, until: str | None, now: float) -> tuple[date, date]:
    """The first and last UTC day of `--since` (a duration back from the end of `--until`,
    like ``90d``, or a date; default `DEFAULT_SINCE`) and `--until` (a date, inclusive;
    default today). A day before the earliest date the collector accepts (`EARLIEST`), or
    one past the calendar's last, raises `ConfigError` as a malformed one does."""
    from collector.backfill import EARLIEST, not_too_early, parse_when, read_when
    from collector.windows import parse_duration

    since = since or DEFAULT_SINCE
    today = datetime.fromtimestamp(now, UTC).date()
    try:
        last = today if until is None else _day(parse_when(until))
    except ValueError as exc:
        raise ConfigError(f"--until: {exc}") from None
    if last >= date.max:  # the day after it, where the range ends, does not exist
        raise ConfigError(f"--until: {until} is not before {date.max}, the last day of the "
                          "calendar: write an earlier date")
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    try:
        seconds = parse_duration(since)
    except ValueError:
        try:
            moment = read_when(since)
        except ValueError:
            raise ConfigError(
                f"--since: {since!r} is neither a duration (90d) nor a date (2026-01-31)"
            ) from None
        try:
            first = _day(not_too_early(moment, since))
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
    else:
        # compared in seconds: a duration such as 99999999d is past what timedelta holds
        if seconds > (end - EARLIEST).total_seconds():
            raise ConfigError(
                f"--since {since} reaches back before {EARLIEST:%Y-%m-%d}, the earliest date "
                f"the collector accepts: write a shorter duration (at most "
                f"{(end - EARLIEST).days}d back from {last}) or a date from "
                f"{EARLIEST:%Y-%m-%d} on"
            )
        first = (end - timedelta(seconds=seconds)).date()
    if first > last:
        raise ConfigError(f"--since {since} comes after --until {last}")
    return first, last


def _day(ts: float) -> date:
    """The UTC day of `ts`; `date.max` for a moment past it (a date in year 9999 west of
    UTC falls in year 10000)."""
    try:
        return datetime.fromtimestamp(ts, UTC).date()
    except (OverflowError, ValueError, OSError):
        return date.max
