"""How many times each history window is fetched when backfills run beside a daemon on one
SQLite database, two of them killed with SIGKILL and faults injected in between.

    .venv/bin/python bench/beside.py [--kill-after 1.5 2.5 4 6] [--latency 0.005] [--days 8]

For each K of `--kill-after`: a simulator in this process (5 ms of latency, 3 orgs, one
token), a new SQLite database (`collector db upgrade`), a configuration with the shipped
defaults apart from the base URL, the database and the orgs (org-one has a segment), then
as real commands: `collector run`; 0.5 s later `collector backfill --since <the UTC day
--days ago> --concurrency 8`, killed with SIGKILL after K seconds; 40 answers of 503, 10
connection resets and 10 truncated bodies queued in the simulator; a second backfill killed
after K seconds; a third one that runs to its end; once the daemon has logged the first run
of every org, SIGTERM to the daemon. From the simulator's records: the 200 answers per
history window (source, org, segment, window start) of the windowed sources (sessions, prs,
searches).
A history window closed more than an hour before the start and no re-poll age of it comes
due within an interval of the run, so only a backfill or the daemon's catch-up fetches it:
each fetch past the first is a re-fetch. Target: at most 1.05 fetches per history window.
Also printed: the history answers (daemon's included) before the first kill, between the
kills and after, so that a K at which nothing had been fetched yet shows as such. Exit 1 if
the target is missed, a history window was never fetched, or the third backfill or the
daemon did not exit 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from collector.sim import Fault, Simulator, TokenGrant

TOKEN = "cog_bench_token"  # noqa: S105 (the simulator's throw-away token)
ORGS = ("org-one", "org-two", "org-three")
SEGMENT = ("user-1", "user-2")  # org-one's segment "team"
WINDOWED = ("sessions", "prs", "searches")  # searches: whole org only
HOUR = 3600
INTERVAL = 900  # [schedule].interval, default
REPOLL_AGES = (HOUR, 6 * HOUR, 24 * HOUR, 72 * HOUR, 168 * HOUR)  # default repoll_ages

Key = tuple[str, str, tuple[str, ...], int]  # source, org, segment's user_ids, time_after


@dataclass
class Result:
    codes: list[int]  # backfills 1, 2, 3, then the daemon
    windows: int
    fetches: int
    most: int
    twice: int
    thrice: int
    missing: int
    by_source: dict[str, tuple[int, int]]  # source -> (windows, fetches)
    statuses: Counter[int]
    phases: list[int]  # history answers before the 1st kill, before the 2nd, after
    seconds: float


def write_config(path: Path, base_url: str) -> Path:
    """The shipped defaults but the database, the base URL and the orgs."""
    users = ", ".join(f'"{u}"' for u in SEGMENT)
    orgs = f'[[orgs]]\nid = "{ORGS[0]}"\n[[orgs.segments]]\nname = "team"\nuser_ids = [{users}]\n'
    orgs += "".join(f'[[orgs]]\nid = "{org}"\n' for org in ORGS[1:])
    path.write_text(
        f'[database]\nurl = "sqlite:///{path.with_suffix(".db")}"\n'
        f'[api]\nbase_url = "{base_url}"\n{orgs}'
    )
    return path


def history(end: int, started: float, ended: float) -> bool:
    """Closed an hour (and an interval) before the start, and no re-poll of it comes due
    within an interval (a run takes what is due within half of one) of the run."""
    return end + HOUR < started - INTERVAL and not any(
        started - INTERVAL <= end + age <= ended + INTERVAL for age in REPOLL_AGES
    )


def expected(since: int, started: float, ended: float) -> set[Key]:
    """Every history window the backfills' range holds, per source, org and segment."""
    targets = [(org, ()) for org in ORGS] + [(ORGS[0], tuple(sorted(SEGMENT)))]
    return {
        (source, org, users, start)
        for source in WINDOWED
        for org, users in targets
        if not (users and source == "searches")
        for start in range(since, int(started), HOUR)
        if history(start + HOUR, started, ended)
    }


def killed(cmd: list[str], env: dict[str, str], after: float, log: Path) -> int:
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err)
        try:
            return proc.wait(timeout=after)  # finished before K: its own exit code
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            return proc.wait()


def wait_for_runs(log: Path, runs: int, timeout: float) -> None:
    """Until the daemon has logged `runs` runs (its first run of every org)."""
    give_up = time.monotonic() + timeout
    while log.read_text().count("run org=") < runs:
        if time.monotonic() > give_up:
            raise SystemExit(f"the daemon logged fewer than {runs} runs:\n{log.read_text()}")
        time.sleep(0.2)


def scenario(kill_after: float, latency: float, days: int, tmp: Path) -> Result:
    env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
    sim = Simulator(orgs=ORGS, tokens={TOKEN: TokenGrant(None)}, latency=latency)
    with sim:
        config = write_config(tmp / f"k{kill_after:g}.toml", sim.base_url)
        cli = [sys.executable, "-m", "collector", "--config", str(config)]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        since = (int(time.time()) // 86400 - days) * 86400  # the UTC day `days` days ago
        day = datetime.fromtimestamp(since, UTC).date().isoformat()
        backfill = [*cli, "backfill", "--since", day, "--concurrency", "8"]
        daemon_log = tmp / f"k{kill_after:g}.daemon.log"
        started = time.time()
        with daemon_log.open("w") as err:
            daemon = subprocess.Popen([*cli, "run"], env=env, stdout=err, stderr=err)
        time.sleep(0.5)
        codes = [killed(backfill, env, kill_after, tmp / "bf1.log")]
        kills = [time.time()]
        sim.inject(Fault("status", status=503, count=40), Fault("reset", count=10),
                   Fault("truncate", count=10))
        codes.append(killed(backfill, env, kill_after, tmp / "bf2.log"))
        kills.append(time.time())
        last = subprocess.run(backfill, env=env, capture_output=True, text=True, check=False)
        codes.append(last.returncode)
        if last.returncode != 0:
            print(f"  third backfill exit {last.returncode}:\n{last.stderr[-2000:]}")
        wait_for_runs(daemon_log, len(ORGS), timeout=300)
        daemon.send_signal(signal.SIGTERM)
        codes.append(daemon.wait(timeout=120))
        ended = time.time()
        records = sim.requests
    ok = [
        r
        for r in records
        if r.status == 200 and r.endpoint in WINDOWED and r.time_after is not None
        and r.time_before is not None and r.time_after >= since
        and history(r.time_before, started, ended)
    ]
    fetched = Counter(
        (r.endpoint, r.org_id or "", tuple(sorted(r.user_ids)), r.time_after) for r in ok
    )
    edges = [0.0, *kills, float("inf")]
    want = expected(since, started, ended)
    counts = [fetched[key] for key in want]
    return Result(
        codes=codes,
        windows=len(want),
        fetches=sum(counts),
        most=max(counts, default=0),
        twice=sum(1 for c in counts if c == 2),
        thrice=sum(1 for c in counts if c >= 3),
        missing=sum(1 for c in counts if c == 0),
        by_source={
            s: (sum(1 for k in want if k[0] == s), sum(fetched[k] for k in want if k[0] == s))
            for s in WINDOWED
        },
        statuses=Counter(r.status for r in records),
        phases=[sum(1 for r in ok if lo <= r.at < hi) for lo, hi in pairwise(edges)],
        seconds=ended - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-after", type=float, nargs="+", default=[1.5, 2.5, 4.0, 6.0],
                        help="seconds after which the first two backfills get SIGKILL")
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--days", type=int, default=8, help="backfill from this many days ago")
    args = parser.parse_args()
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    failed = False
    for kill_after in args.kill_after:
        with tempfile.TemporaryDirectory() as tmp:
            r = scenario(kill_after, args.latency, args.days, Path(tmp))
        ratio = r.fetches / max(1, r.windows)
        failed |= ratio > 1.05 or r.missing > 0 or r.codes[2:] != [0, 0]
        print(
            f"K = {kill_after:g}s: {r.windows} history windows, {r.fetches} fetches, "
            f"ratio {ratio:.3f}, max {r.most} ({r.twice} fetched twice, {r.thrice} 3+ times, "
            f"{r.missing} never); exit codes: backfills {r.codes[0]}, {r.codes[1]}, "
            f"{r.codes[2]}, daemon {r.codes[3]}; {r.seconds:.1f}s",
            flush=True,
        )
        per_source = ", ".join(f"{s} {f}/{w}" for s, (w, f) in r.by_source.items())
        print(f"  fetches/windows: {per_source}; answers by status: {dict(r.statuses)}")
        print(f"  history answers before the first kill, between the kills, after: {r.phases}")
        print("  load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
