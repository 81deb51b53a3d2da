"""`collector report`: one self-contained HTML page of the database's metrics, written to a
file or served live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from collector.cli.support import EXIT_USAGE, Context, errors_to_exit_codes, fail, pass_context

if TYPE_CHECKING:
    from collector.config import Config
    from collector.report import Report, Selection

DEFAULT_OUT, DEFAULT_HOST = "report.html", "127.0.0.1"


@click.command()
@click.option("--out", default=None, metavar="PATH",
              help=f"The HTML file to write (default: {DEFAULT_OUT}; replaced if it exists).")
@click.option("--serve", "port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve the page at http://HOST:PORT/ instead of writing a file, rendered "
                   "from the database on every load (0 picks a free port), until SIGINT or "
                   "SIGTERM.")
@click.option("--host", default=None, metavar="ADDRESS",
              help=f"The address --serve listens on (default: {DEFAULT_HOST}). The page has no "
                   "authentication: listen elsewhere only behind a proxy that has.")
@click.option("--since", default=None, metavar="DURATION|DATE",
              help="First day: a duration back from the end of --until (30d), or a UTC date "
                   "(default: 90 days back, or the first day with data when that is later and "
                   "not after --until).")
@click.option("--until", default=None, metavar="DATE",
              help="Last day shown, inclusive (UTC date; default: today).")
@click.option("--org", "orgs", multiple=True, metavar="ID", help="Only this org (repeatable).")
@click.option("--segment", "segments", multiple=True, metavar="NAME",
              help='Only this segment (repeatable; "all" is the whole org).')
@pass_context
def report(obj: Context, out: str | None, port: int | None, host: str | None,
           since: str | None, until: str | None, orgs: tuple[str, ...],
           segments: tuple[str, ...]) -> None:
    """Write one HTML page of sessions, ACUs, PRs, active users, searches and data quality,
    from the database alone.

    The page is self-contained: its charts are SVG, its styles and script inline, and it
    fetches nothing when opened (it works offline, from a file or an attachment). Every
    chart's data is one click away as a table, and as CSV. No API request is made.

    With --serve, the same page is served over HTTP instead, read afresh from the database
    on each load (a --since of 30d counts back from the day of the load).
    """
    started = time.perf_counter()
    from collector.report import Selection, day_range

    if port is not None and out is not None:
        fail("--out and --serve exclude each other: write the page to a file, or serve it",
             EXIT_USAGE)
    if port is None and host is not None:
        fail("--host is the address of --serve; add --serve PORT", EXIT_USAGE)
    selection = Selection(since, until, orgs, segments)
    with errors_to_exit_codes():
        config = obj.config()
        day_range(since, until, time.time())  # a bad --since or --until before the database
        if port is not None:
            _serve(config, selection, host or DEFAULT_HOST, port)
            return
        result = _render(config, selection)
    out = out or DEFAULT_OUT
    data = result.html.encode()
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        fail(f"--out: cannot write {out}: {exc.strerror or exc}", EXIT_USAGE)
    first, last = result.first_day, result.last_day
    size = len(data)
    click.echo(f"report: wrote {out} ({size / 1024:,.0f} KB: {len(result.orgs)} org(s), "
               f"{result.charts} charts, {first} to {last}) in "
               f"{time.perf_counter() - started:.2f}s")
    if result.empty:
        click.echo(f"report: the database holds no data between {first} and {last}; the page "
                   "says so. Collect first (collector collect, run or backfill).", err=True)


def _render(config: Config, selection: Selection) -> Report:
    from collector.assembly import open_store
    from collector.report import report_of

    with open_store(config, writable=False) as store:  # a read-only replica will do
        return report_of(config, store, selection, time.time())


def _serve(config: Config, selection: Selection, host: str, port: int) -> None:
    """Check the selection with a first rendering (an unknown --org is exit 2 now, not a
    500 on every load), then serve until SIGINT or SIGTERM, on one read-only store."""
    from collector.assembly import open_store
    from collector.report import report_of
    from collector.report.serve import listen, serve_until_stopped

    with open_store(config, writable=False) as store:
        first = report_of(config, store, selection, time.time())
        server = listen(host, port, lambda now: report_of(config, store, selection, now))
        click.echo(f"report: serving {server.url}")
        if first.empty:
            click.echo(f"report: the database holds no data between {first.first_day} and "
                       f"{first.last_day} yet; the page says so until it does.", err=True)
        serve_until_stopped(server)
