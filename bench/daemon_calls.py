"""API calls per window of the daemon in steady state, against a naive 7-day re-poll.

Runs the real daemon (`Daemon.run_org`) every `interval` of simulated time against the
simulator over loopback HTTP, with an injected clock, and counts the requests the simulator
answered for each window. The naive strategy re-fetches every window of a 7-day lookback on
every run; its calls are counted from its plan (sending them would be ~160k requests).

    .venv/bin/python bench/daemon_calls.py [--days 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from collector import db, migrate
from collector.assembly import Collector
from collector.client import DevinClient
from collector.config import parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.daemon import Daemon
from collector.sim import Simulator, TokenGrant
from collector.store import Store
from collector.windows import DAY, parse_duration, window_at, windows_between

T0 = 1_795_132_800  # 2026-11-20 00:00 UTC
TOKEN = "cog_bench"  # noqa: S105 (the simulator's throw-away token)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--interval", default="15m")
    parser.add_argument("--lookback", default="7d", help="the naive strategy's lookback")
    args = parser.parse_args()
    interval = parse_duration(args.interval)
    lookback = parse_duration(args.lookback)
    clock = Clock(T0)
    with tempfile.TemporaryDirectory() as tmp, Simulator(
        orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}, clock=clock
    ) as sim:
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{Path(tmp) / 'bench.db'}"},
                "api": {"base_url": sim.base_url, "rate_limit": 10_000},
                "windows": {"size": "1h"},
                "schedule": {"interval": args.interval, "catchup_horizon": "1h", "jitter": "0s"},
                "sources": {"enabled": ["sessions"]},
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
        ages = config.schedule.repoll_ages
        naive: Counter[int] = Counter()
        runs = 0
        while clock.now < T0 + args.days * DAY:
            daemon.run_org("org-alpha")
            current = window_at(clock.now, 3600)
            for w in windows_between(clock.now - lookback, current.end, 3600):
                naive[w.start] += 1
            runs += 1
            clock.now += interval
        client.close()
        engine.dispose()
        counts = Counter(r.time_after for r in sim.requests if r.status == 200)
    # windows whose whole life (open, every repoll age; the whole lookback) was simulated
    last_age = max(ages)
    settled = [s for s in counts if s >= T0 and s + 3600 + last_age < T0 + args.days * DAY]
    full = [s for s in naive if s >= T0 and s + 3600 + lookback < T0 + args.days * DAY]
    ours = statistics.mean(counts[s] for s in settled)
    theirs = statistics.mean(naive[s] for s in full)
    print(f"simulated {args.days} days, {runs} runs every {args.interval}, hourly windows, "
          f"repoll ages {config.schedule.repoll_ages}")
    print(f"collector: {ours:.2f} calls per window over {len(settled)} settled windows "
          f"(expected 3600/interval + len(repoll_ages) = {3600 // interval + len(ages)})")
    print(f"naive {args.lookback} lookback every run: {theirs:.2f} calls per window")
    print(f"ratio naive/collector: {theirs / ours:.1f}x fewer calls")


if __name__ == "__main__":
    main()
