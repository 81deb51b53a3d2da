"""`collector demo`: the whole flow against a local simulator, into a local SQLite file.

It starts the simulator on loopback with a throw-away token, migrates the database, collects a
few days of hourly windows for two orgs through the same path as the daemon, and prints what
the public views hold.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from collector import backfill as bf
from collector import db
from collector.assembly import open_collector, open_engine
from collector.config import parse_config
from collector.sim import Simulator, SyntheticData, TokenGrant
from collector.sources import FAMILIES
from collector.targets import targets_from_config
from collector.windows import DAY

DEMO_ORGS = ({"id": "org-platform", "name": "Platform"}, {"id": "org-research", "name": "Research"})


#: The demo reads well at this width, piped or on a terminal that wide.
WIDTH = 80

NEXT_STEPS = """\
Next: collect your own orgs.
  1. cp config.example.toml collector.toml
     and set [[orgs]] id to your organization's id (drop the example segment)
  2. export DEVIN_API_TOKEN=cog_...   (a service user's token, not in the file)
  3. collector db upgrade
  4. collector collect                (once; `collector run` keeps polling)"""


def run_demo(database: str, days: int, console: Console | None = None) -> int:
    """Run the demo; returns the exit code."""
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(width=WIDTH, highlight=False)
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
            db.upgrade(engine)
        finally:
            engine.dispose()
        now = time.time()
        span, _ = bf.Range.up_to_now(now - days * DAY, now, config.windows.size, now)
        targets = targets_from_config(config)
        total = sum(span.windows_of(t) for t in targets)
        _say(console, f"Simulator at {base_url} (synthetic data, no token needed).")
        _say(
            console,
            f"Collecting {total} windows and buckets of every source ({', '.join(FAMILIES)}; "
            f"{days} day{'s' if days > 1 else ''}, {len(DEMO_ORGS)} orgs and one segment) into",
        )
        _say(console, f"  {database}")
        with open_collector(config, {config.api.token_env: token}) as collector:
            work = bf.plan(collector.store, targets, span, clock=time.time, claims=None)
            report = collector.collect(work, concurrency=8)
            _say(
                console,
                f"Collected {report.collected} windows, {report.failed_count} failed, "
                f"in {report.duration:.1f}s ({sim.count()} requests).\n",
            )
            _print_views(collector.store.engine, console)
    _say(console, "\nQuery it yourself:")
    _say(console, f"  sqlite3 {database} \\")
    _say(console, "    'SELECT * FROM devin_daily ORDER BY day DESC LIMIT 5'")
    _say(console, "")
    _say(console, NEXT_STEPS)
    return 0 if report.ok else 1


def _say(console: Console, line: str) -> None:
    """Prose, printed as written: brackets are not markup, and lines are kept short."""
    console.print(line, markup=False, highlight=False)


def _print_views(engine: Engine, console: Console) -> None:
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
    table = _table("session_metrics_daily (UTC days)",
                   "merged: sessions with a merged PR; ACUs: total; partial: windows missing",
                   ("org", "segment", "day"), ("sessions", "merged", "ACUs", "complete"))
    for org, segment, day, count, merged, total, complete in daily:
        table.add_row(org, segment, str(day)[:10], str(count), str(merged), f"{total:.1f}",
                      "yes" if complete else "partial")
    console.print(table)
    by_origin = _table("session_metrics_by_origin", "whole orgs (segment all)",
                       ("org", "origin"), ("sessions",))
    for org, origin, count in origins:
        by_origin.add_row(org, origin, str(count))
    console.print(by_origin)
    daily_all = _table("devin_daily (every source, UTC days)",
                       "PRs: created/merged; DAU: daily active users",
                       ("org", "day"), ("sessions", "ACUs", "PRs", "searches", "DAU"))
    for org, day, count, acus, created, merged, searches, dau in every:
        daily_all.add_row(org, str(day)[:10], _n(count), "-" if acus is None else f"{acus:.1f}",
                          f"{_n(created)}/{_n(merged)}", _n(searches), _n(dau))
    console.print(daily_all)


def _table(title: str, caption: str, labels: tuple[str, ...], numbers: tuple[str, ...]) -> Table:
    """A table narrow enough for 80 columns: no vertical rules, no outer padding, short
    headers; `labels` left-aligned, then `numbers` right-aligned."""
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
    for column in labels:
        table.add_column(column, no_wrap=True, min_width=10 if column == "day" else None)
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    return table


def _n(value: object) -> str:
    return "-" if value is None else str(value)
