"""The metrics family: API calls per org per hour with every source on, and a year of every
source for several orgs as a backfill.

    .venv/bin/python bench/family.py [--days 10] [--orgs 10] [--rate 100] [--windows-size 1d]

About 4 minutes on 2 cores with the defaults (part 1 about 80 s, part 2 about 150 s);
`--only 1` or `--only 2` runs one part. Nothing else should run meanwhile: part 2 is timed.

1. Steady state. The real daemon (`Daemon.run_org`) runs every 15 minutes of simulated time
   (injected clock) for `--days` days against the in-process simulator over loopback HTTP,
   with the default configuration: hourly windows, the default schedule and ladder, one org
   with no segment, all five sources. The simulator's requests are counted per endpoint over
   the last `--measure-hours` hours only (the days before are warm-up, so that the 7-day
   ladder is in steady state). The naive strategy re-fetches, on every run, every window
   (windowed sources) and every bucket (bucketed sources) overlapping the last `--lookback`,
   one call each; its calls are counted from that plan, not sent.
2. A year of every source. `collector backfill --since <a year ago>` runs as a real command
   (a subprocess, default `[api]` settings: `rate_limit = "auto"`, the default concurrency)
   into a new SQLite file, against the simulator with a per-token token-bucket limit of
   `--rate` requests/s; all orgs share one token (one limit). Windowed sources use windows of
   `--windows-size` (1d by default: hourly windows take ~45 minutes at 100/s, so their time
   is projected from the rate instead).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from collector import db, migrate
from collector.assembly import Collector
from collector.calendars import windows
from collector.client import DevinClient
from collector.config import ApiConfig, parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.daemon import Daemon
from collector.sim import Simulator, TokenGrant
from collector.sources import SOURCES, Source
from collector.store import Store
from collector.windows import (
    DAY,
    count_windows,
    format_duration,
    parse_duration,
    parse_window_size,
)

T0 = 1_795_132_800  # 2026-11-20 00:00 UTC
TOKEN = "cog_bench"  # noqa: S105 (the simulator's throw-away token)
HOUR = 3600
#: The simulator's endpoint kinds, in the order of the sources.
KINDS = ("sessions", "prs", "searches", "active_users", "consumption")
WINDOWED = ("sessions", "prs", "searches")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kind(source: Source) -> str:
    """The simulator's endpoint kind for `source` (the three active-user sources share one)."""
    return source.config_name


def naive_calls(now: float, lookback: int, size: int) -> Counter[str]:
    """One naive run at `now`: every window or bucket overlapping the last `lookback`, each
    in a call of its own."""
    calls: Counter[str] = Counter()
    for source in SOURCES.values():
        calendar = source.calendar or windows(size)
        calls[kind(source)] += calendar.count(now - lookback, calendar.at(now).end)
    return calls


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w)
                              in enumerate(zip(r, widths, strict=True))) + " |" for r in rows]
    return "\n".join([line, rule, *body])


# -- 1. steady state ---------------------------------------------------------------------------

def steady_state(days: int, measure_hours: int, lookback: int) -> None:
    clock = Clock(T0)
    end = T0 + days * DAY
    measure_from = end - measure_hours * HOUR
    with tempfile.TemporaryDirectory() as tmp, Simulator(
        orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}, clock=clock
    ) as sim:
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{Path(tmp) / 'bench.db'}"},
                # a high client limit: the injected clock does not advance while it waits
                "api": {"base_url": sim.base_url, "rate_limit": 10_000},
                "windows": {"size": "1h"},
                "orgs": [{"id": "org-alpha"}],
            },
            {},
            source="bench",
        )
        engine = db.create_engine_for(config.database.url)
        migrate.upgrade(engine)
        client = DevinClient(
            make_http_client(config), Credentials({"org-alpha": TOKEN}), rate_limit=10_000,
            clock=clock,
        )
        daemon = Daemon(Collector(config, Store(engine), client), clock=clock)
        interval = config.schedule.interval
        naive: Counter[str] = Counter()
        runs = measured_runs = 0
        started = time.perf_counter()
        while clock.now < end:
            if clock.now == measure_from:
                sim.reset_stats()
            if clock.now >= measure_from:
                naive += naive_calls(clock.now, lookback, config.windows.size)
                measured_runs += 1
            daemon.run_org("org-alpha")
            runs += 1
            clock.now += interval
        wall = time.perf_counter() - started
        client.close()
        engine.dispose()
        seen = sim.requests
    ours = Counter(r.endpoint for r in seen)
    failed = sum(1 for r in seen if r.status != 200)
    hours = measure_hours
    print(f"1. steady state: {days} simulated days, {runs} daemon runs every "
          f"{interval // 60}m ({wall:.0f}s of wall time); hourly windows, repoll ages "
          f"{[format_duration(a) for a in config.schedule.repoll_ages]}; one org, every source; "
          f"measured over the last {hours} h ({measured_runs} runs); "
          f"{failed} non-200 answers")
    rows = []
    for name in [*KINDS, *sorted(set(ours) - set(KINDS))]:
        c, n = ours[name] / hours, naive[name] / hours
        rows.append((name, f"{c:.2f}", f"{n:.2f}", f"{n / c:.1f}x" if c else "-"))
    c, n = sum(ours.values()) / hours, sum(naive.values()) / hours
    rows.append(("total", f"{c:.2f}", f"{n:.2f}", f"{n / c:.1f}x"))
    print(table(("source", "collector calls/org/h",
                 f"naive {format_duration(lookback)} re-poll calls/org/h", "naive/collector"),
                rows))
    print("active_users counts dau, wau and mau together (one endpoint kind in the simulator);"
          " naive: every window or bucket overlapping the lookback, one call each, every run")
    print()


# -- 2. a year of every source -----------------------------------------------------------------

def year_backfill(orgs: int, rate: float, burst: float | None, size: int, latency: float,
                  span_days: int) -> None:
    org_ids = [f"org-{i:02d}" for i in range(1, orgs + 1)]
    with tempfile.TemporaryDirectory() as tmp, Simulator(
        orgs=org_ids, tokens={TOKEN: TokenGrant(None)}, rate_limit=rate, burst=burst,
        latency=latency,
    ) as sim:
        database = Path(tmp) / "year.db"
        config = Path(tmp) / "year.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{database}"\n'
            f'[api]\nbase_url = "{sim.base_url}"\n'
            f'[windows]\nsize = "{format_duration(size)}"\n'
            + "".join(f'[[orgs]]\nid = "{org}"\n' for org in org_ids)
        )
        env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
        env.pop("COLLECTOR_CONFIG", None)
        cli = [sys.executable, "-m", "collector", "--config", str(config)]
        subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
        now = time.time()
        since = now - span_days * DAY
        started = time.perf_counter()
        done = subprocess.run(
            [*cli, "backfill", "--since", _iso(since)],
            env=env, capture_output=True, text=True, check=False,
        )
        wall = time.perf_counter() - started
        seen = sim.requests
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    found = re.search(r"(\d+) of (\d+) window\(s\) collected in ([\d.]+)s", done.stdout)
    ok = Counter(r.endpoint for r in seen if r.status == 200)
    throttled = sum(1 for r in seen if r.status == 429)
    other = len(seen) - sum(ok.values()) - throttled
    answered = sum(ok.values())
    windowed = sum(ok[k] for k in WINDOWED)
    bucketed = answered - windowed
    api = ApiConfig()
    print(f"2. a year of every source: {orgs} orgs on one token, --since {span_days} days ago, "
          f"{format_duration(size)} windows, server limit {rate:g}/s per token (token bucket, "
          f"burst {sim.burst:g}), {latency * 1000:g} ms latency, [api] defaults "
          f"(rate_limit {api.rate_limit!r}, concurrency {api.concurrency}); "
          f"exit {done.returncode}; "
          + (f"{found.group(1)} of {found.group(2)} windows/buckets collected"
             if found else "no report line"))
    rate_ok = answered / wall
    hourly_windows = orgs * len(WINDOWED) * count_windows(since, now, HOUR)
    hourly_requests = hourly_windows + bucketed
    rows = [
        *((f"{k} (windowed, 200 answers)", f"{ok[k]:,}") for k in WINDOWED),
        *((f"{k} (bucketed, 200 answers)", f"{ok[k]:,}") for k in KINDS if k not in WINDOWED),
        ("windowed requests", f"{windowed:,}"),
        ("bucketed requests", f"{bucketed:,}"),
        ("200 answers in all", f"{answered:,}"),
        ("429 answers", f"{throttled:,}"),
        ("other answers", f"{other:,}"),
        ("wall time of the backfill command", f"{wall:.1f} s"),
        ("200 answers/s over the wall time", f"{rate_ok:.1f}/s = {rate_ok / rate:.1%} of "
                                             f"{rate:g}/s"),
        (f"projection, 1h windows: {hourly_requests:,} requests at {rate:g}/s",
         f"{hourly_requests / rate / 60:.0f} min"),
        (f"projection, 1h windows: {hourly_requests:,} requests at {rate_ok:.1f}/s",
         f"{hourly_requests / rate_ok / 60:.0f} min"),
    ]
    print(table(("measure", "value"), rows))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--only", type=int, choices=[1, 2], help="run only this part")
    one = parser.add_argument_group("1. steady state")
    one.add_argument("--days", type=int, default=10, help="simulated days (default 10)")
    one.add_argument("--measure-hours", type=int, default=24,
                     help="hours at the end that are counted (default 24)")
    one.add_argument("--lookback", default="7d", help="the naive strategy's lookback (7d)")
    two = parser.add_argument_group("2. a year of every source")
    two.add_argument("--orgs", type=int, default=10, help="orgs, one token (default 10)")
    two.add_argument("--rate", type=float, default=100.0,
                     help="the server's limit, requests/s per token (default 100)")
    two.add_argument("--burst", type=float, default=None,
                     help="the token bucket's size (default: the simulator's, = --rate)")
    two.add_argument("--windows-size", default="1d",
                     help="window size of sessions, PRs, searches (default 1d)")
    two.add_argument("--latency", type=float, default=0.005,
                     help="the simulator's response time, seconds (default 0.005)")
    two.add_argument("--span-days", type=int, default=365, help="days back (default 365)")
    args = parser.parse_args()
    lookback = parse_duration(args.lookback)
    if args.days * DAY - args.measure_hours * HOUR < 8 * DAY:
        parser.error("--days less --measure-hours must leave 8 days of warm-up (the 7d ladder)")
    started = time.perf_counter()
    if args.only in (None, 1):
        steady_state(args.days, args.measure_hours, lookback)
    if args.only in (None, 2):
        year_backfill(args.orgs, args.rate, args.burst, parse_window_size(args.windows_size),
                      args.latency, args.span_days)
    print(f"\nthe whole benchmark took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
