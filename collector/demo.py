"""`collector demo`: the whole flow against a local simulator, into a local SQLite file.

It starts the simulator on loopback with a throw-away token, migrates the database, collects a
few days of hourly windows for two orgs through the same path as the daemon, and prints what
the public views hold.
"""

from __future__ import annotations

import secrets
import textwrap
import time
from pathlib import Path

import click
from sqlalchemy import Engine, text

from collector import backfill as bf
from collector import migrate
from collector.assembly import open_collector, open_engine
from collector.config import parse_config
from collector.sim import Simulator, SyntheticData, TokenGrant
from collector.sources import FAMILIES
from collector.targets import targets_from_config
from collector.windows import DAY

DEMO_ORGS = ({"id": "org-platform", "name": "Platform"}, {"id": "org-research", "name": "Research"})

#: The demo's lines fit this width, piped or on a terminal.
WIDTH = 80

NEXT_STEPS = """\
Next: collect your own orgs.
  1. cp config.example.toml collector.toml
     and set [[orgs]] id to your organization's id (drop the example segment)
  2. export DEVIN_API_TOKEN=cog_...   (a service user's token, not in the file)
  3. collector db upgrade
  4. collector collect                (once; `collector run` keeps polling)"""


def run_demo(database: str, days: int) -> int:
    """Run the demo; returns the exit code."""
    token = f"cog_demo_{secrets.token_hex(16)}"
    org_ids = tuple(o["id"] for o in DEMO_ORGS)
    # 200 people per org, so that daily, weekly and monthly active users differ
    data = SyntheticData(seed=0, users_per_org=200)
    with Simulator(data=data, orgs=org_ids, tokens={token: TokenGrant(None)}) as sim:
        base_url = sim.base_url
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{Path(database).resolve()}"},
                "api": {"base_url": base_url, "rate_limit": 500, "concurrency": 8},
                "windows": {"size": "1h"},
                "orgs": [
                    {
                        **DEMO_ORGS[0],
                        "segments": [{"name": "backend-team", "user_ids": ["user-1", "user-2"]}],
                    },
                    DEMO_ORGS[1],
                ],
            },
            {},
            source="demo",
        )
        engine = open_engine(config)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        now = time.time()
        span, _ = bf.Range.up_to_now(now - days * DAY, now, config.windows.size, now)
        targets = targets_from_config(config)
        total = sum(span.windows_of(t) for t in targets)
        _say(f"Simulator at {base_url} (synthetic data, no token needed).")
        _say(
            f"Collecting {total} windows and buckets of every source ({', '.join(FAMILIES)}; "
            f"{days} day{'s' if days > 1 else ''}, {len(DEMO_ORGS)} orgs and one segment) into",
        )
        _say(f"  {database}")
        with open_collector(config, {config.api.token_env: token}) as collector:
            work = bf.plan(collector.store, targets, span, clock=time.time, claims=None)
            report = collector.collect(work, concurrency=8)
            _say(
                f"Collected {report.collected} windows, {report.failed_count} failed, "
                f"in {report.duration:.1f}s ({sim.count()} requests).\n",
            )
            _print_views(collector.store.engine)
    _say("Query it yourself:")
    _say(f"  sqlite3 {database} \\")
    _say("    'SELECT * FROM devin_daily ORDER BY day DESC LIMIT 5'")
    _say("")
    _say(NEXT_STEPS)
    return 0 if report.ok else 1


def _say(text: str) -> None:
    """Prose, printed as written, each line wrapped at `WIDTH` (its continuation indented
    like it)."""
    for line in text.split("\n"):
        indent = line[: len(line) - len(line.lstrip())]
        click.echo(textwrap.fill(line, WIDTH, subsequent_indent=indent, break_on_hyphens=False)
                   if len(line) > WIDTH else line)


def _print_views(engine: Engine) -> None:
    with engine.connect() as conn:
        daily = conn.execute(
            text(
                "SELECT org_id, segment, day, sessions_created_count,"
                " sessions_with_merged_prs_count, total_acus, complete"
                " FROM session_metrics_daily ORDER BY org_id, segment, day"
            )
        ).all()
        every = conn.execute(
            text(
                "SELECT org_id, day, sessions, total_acus, prs_created, prs_merged, searches,"
                " daily_active_users FROM devin_daily ORDER BY org_id, day"
            )
        ).all()
        origins = conn.execute(
            text(
                "SELECT org_id, origin, SUM(sessions_created_count) AS n"
                " FROM session_metrics_by_origin WHERE segment = 'all'"
                " GROUP BY org_id, origin HAVING SUM(sessions_created_count) > 0"
                " ORDER BY org_id, n DESC"
            )
        ).all()
    _table("session_metrics_daily (UTC days)",
           "merged: sessions with a merged PR; ACUs: total; partial: windows missing",
           ("org", "segment", "day"), ("sessions", "merged", "ACUs", "complete"),
           [(org, segment, str(day)[:10], str(count), str(merged), f"{total:.1f}",
             "yes" if complete else "partial")
            for org, segment, day, count, merged, total, complete in daily])
    _table("session_metrics_by_origin", "whole orgs (segment all)",
           ("org", "origin"), ("sessions",),
           [(org, origin, str(count)) for org, origin, count in origins])
    _table("devin_daily (every source, UTC days)",
           "PRs: created/merged; DAU: daily active users",
           ("org", "day"), ("sessions", "ACUs", "PRs", "searches", "DAU"),
           [(org, str(day)[:10], _n(count), "-" if acus is None else f"{acus:.1f}",
             f"{_n(created)}/{_n(merged)}", _n(searches), _n(dau))
            for org, day, count, acus, created, merged, searches, dau in every])


def _table(title: str, caption: str, labels: tuple[str, ...], numbers: tuple[str, ...],
           rows: list[tuple[str, ...]]) -> None:
    """A plain-text table, narrow enough for 80 columns: its title, a header underlined,
    the rows, and the caption; `labels` left-aligned, then `numbers` right-aligned, two
    spaces apart."""
    header = (*labels, *numbers)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i < len(labels) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    _say(title)
    # table lines as they are: wrapping a wide row would break its columns
    click.echo(line(header))
    click.echo("  ".join("-" * width for width in widths))
    for row in rows:
        click.echo(line(row))
    _say(caption)
    _say("")


def _n(value: object) -> str:
    return "-" if value is None else str(value)
