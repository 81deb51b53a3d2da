"""How long `collector report` takes for 10 orgs over 90 days, as a person runs it.

    .venv/bin/python bench/report.py [--runs 7] [--days 90]

Fills a new SQLite database from the simulator (its own process): 10 orgs, two of them with
a segment, hourly windows of every source over `--days` days, through `collector backfill`.
Then runs `collector report --out` `--runs` times as a whole process and prints the median
wall time (Python's start and the imports included), the CPU time, the time the command
prints for itself, and the page's size; then `collector --help` alone, for the start-up.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backfill import TOKEN, measured, server

ORGS = [f"org-team{n:02d}" for n in range(1, 11)]
SEGMENTED = {"org-team01", "org-team02"}


def config_text(db: Path, url: str) -> str:
    lines = [
        f'[database]\nurl = "sqlite:///{db}"\n',
        f'[api]\nbase_url = "{url}"\nrate_limit = 5000\nconcurrency = 16\n',
    ]
    for org in ORGS:
        lines.append(f'[[orgs]]\nid = "{org}"\nname = "Team {org[-2:]}"\n')
        if org in SEGMENTED:
            lines.append('[[orgs.segments]]\nname = "backend"\nuser_ids = ["user-1", "user-2"]\n')
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sim = [sys.executable, "-m", "collector", "simulate", "--port", "0", "--token", TOKEN]
        for org in ORGS:
            sim += ["--org", org]
        with server(sim) as url:
            config = root / "bench.toml"
            config.write_text(config_text(root / "bench.db", url))
            env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
            cli = [sys.executable, "-m", "collector", "--config", str(config)]
            subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
            since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (args.days + 1) * 86400))
            started = time.perf_counter()
            filled = subprocess.run([*cli, "backfill", "--since", since], env=env,
                                    capture_output=True, text=True, check=True)
            found = re.search(r"(\d+) of (\d+) window\(s\) collected", filled.stdout)
            print(f"filled: {found.group(0) if found else filled.stdout.strip()[-200:]} in "
                  f"{time.perf_counter() - started:.0f}s; database "
                  f"{(root / 'bench.db').stat().st_size / 1e6:.0f} MB", flush=True)
        out = root / "report.html"
        runs = [measured([*cli, "report", "--out", str(out), "--since", f"{args.days}d"], env)
                for _ in range(args.runs)]
        printed = [float(re.findall(r"in ([\d.]+)s", r.stdout)[-1]) for r in runs]
        help_runs = [measured([*cli, "--help"], env) for _ in range(args.runs)]
        print(f"collector report, {len(ORGS)} orgs over {args.days} days, {args.runs} runs: "
              f"wall median {statistics.median(r.wall for r in runs):.2f}s "
              f"({min(r.wall for r in runs):.2f} to {max(r.wall for r in runs):.2f}s); "
              f"CPU median {statistics.median(r.cpu for r in runs):.2f}s; the command's own "
              f"time median {statistics.median(printed):.2f}s; page "
              f"{out.stat().st_size / 1024:,.0f} KB", flush=True)
        print(f"collector --help: wall median {statistics.median(r.wall for r in help_runs):.2f}s",
              flush=True)


if __name__ == "__main__":
    main()
