"""`collector report`: one self-contained HTML page of the database's metrics."""

from __future__ import annotations

import time
from pathlib import Path

import click

from collector.cli.support import EXIT_USAGE, Context, errors_to_exit_codes, fail, pass_context


@click.command()
@click.option("--out", default="report.html", show_default=True, metavar="PATH",
              help="The HTML file to write (replaced if it exists).")
@click.option("--since", default="90d", show_default=True,
              help="First day: a duration back from the end of --until (90d), or a UTC date.")
@click.option("--until", default=None, metavar="DATE",
              help="Last day shown, inclusive (UTC date; default: today).")
@click.option("--org", "orgs", multiple=True, metavar="ID", help="Only this org (repeatable).")
@click.option("--segment", "segments", multiple=True, metavar="NAME",
              help='Only this segment (repeatable; "all" is the whole org).')
@pass_context
def report(obj: Context, out: str, since: str, until: str | None, orgs: tuple[str, ...],
           segments: tuple[str, ...]) -> None:
    """Write one HTML page of sessions, ACUs, PRs, active users, searches and data quality,
    from the database alone.

    The page is self-contained: its charts are SVG, its styles and script inline, and it
    fetches nothing when opened (it works offline, from a file or an attachment). Every
    chart's data is one click away as a table, and as CSV. No API request is made.
    """
    started = time.perf_counter()
    from collector.assembly import known_orgs, open_store
    from collector.report import build_report, day_range
    from collector.status import target_status
    from collector.targets import targets_from_config

    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        first, last = day_range(since, until, now)
        with open_store(config, writable=False) as store:  # a read-only replica will do
            targets = targets_from_config(config, org_ids=orgs, orgs=known_orgs(config, store))
            statuses = target_status(store, targets, now=now,
                                     horizon=config.schedule.catchup_horizon)
            result = build_report(store.engine, first_day=first, last_day=last, now=now,
                                  orgs=orgs, segments=segments, statuses=statuses)
    try:
        Path(out).write_text(result.html, encoding="utf-8")
    except OSError as exc:
        fail(f"--out: cannot write {out}: {exc.strerror or exc}", EXIT_USAGE)
    size = len(result.html.encode())
    click.echo(f"report: wrote {out} ({size / 1024:,.0f} KB: {len(result.orgs)} org(s), "
               f"{result.charts} charts, {first} to {last}) in "
               f"{time.perf_counter() - started:.2f}s")
    if result.empty:
        click.echo(f"report: the database holds no data between {first} and {last}; the page "
                   "says so. Collect first (collector collect, run or backfill).", err=True)
