"""How fast a backfill runs against an API whose rate limit it is not told, each figure a
ratio of one run.

    .venv/bin/python bench/rate_limit.py [--rates 2 20 100] [--seconds 60] [--shared 20]

The simulator (its own process) limits each token to R requests per second with a token
bucket of burst 1 and answers 429 with Retry-After beyond it; the collector runs with the
default configuration (`[api].rate_limit = "auto"`): 3 orgs on 2 tokens, 5 ms of latency,
concurrency 16. For each R, a backfill sized to take about `--seconds` at R runs as a real
command; printed: the 200 answers per token per second over the whole run (start-up
included) against R, and the share of answers that were 429. Then two backfills at once on
one token (`--shared R`), and, with no server limit and 50 ms of latency, the collector
against a bare httpx loop in alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from backfill import SINCE, backfill, bare_loop, server, simulator

TOKENS = ("cog_bench_token_one", "cog_bench_token_two")
ORGS = (("org-one", "TOKEN_ONE"), ("org-two", "TOKEN_ONE"), ("org-three", "TOKEN_TWO"))


def run(rate: float, seconds: float, tmp: Path) -> dict[str, float]:
    # per token: windows so that the busier token (two orgs) needs `seconds` at R
    windows_per_org = max(24, int(rate * seconds / 2))
    cmd = [sys.executable, "-m", "collector", "simulate", "--port", "0", "--latency", "0.005",
           "--rate-limit", str(rate), "--burst", "1"]
    for org, _ in ORGS:
        cmd += ["--org", org]
    for token in TOKENS:
        cmd += ["--token", token]
    with server(cmd) as url:
        db = tmp / f"r{rate}.db"
        config = tmp / f"r{rate}.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n[api]\nbase_url = "{url}"\nconcurrency = 16\n'
            '[windows]\nsize = "5m"\n'
            + '[sources]\nenabled = ["sessions"]\n'
            + "".join(f'[[orgs]]\nid = "{org}"\ntoken_env = "{env}"\n' for org, env in ORGS)
        )
        env = {**os.environ, "TOKEN_ONE": TOKENS[0], "TOKEN_TWO": TOKENS[1]}
        cli = [sys.executable, "-m", "collector", "--config", str(config)]
        subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
        until = SINCE + windows_per_org * 300
        started = time.perf_counter()
        done = subprocess.run(
            [*cli, "backfill", "--since", _iso(SINCE), "--until", _iso(until)],
            env=env, capture_output=True, text=True, check=False,
        )
        wall = time.perf_counter() - started
        requests = httpx.get(f"{url}/_sim/stats").json()["requests"]
    by_status = Counter(r["status"] for r in requests)
    ok_one = sum(1 for r in requests if r["status"] == 200 and r["org_id"] != "org-three")
    return {
        "rate_limit": rate,
        "exit_code": done.returncode,
        "windows": windows_per_org * len(ORGS),
        "seconds": round(wall, 2),
        "answers": len(requests),
        "429": by_status[429],
        "share_429": by_status[429] / max(1, len(requests)),
        # the busier token (two orgs): its 200 answers per second over the whole run
        "per_token_rate": ok_one / wall,
        "ratio": ok_one / wall / rate,
    }


def shared(rate: float, seconds: float, tmp: Path) -> dict[str, float]:
    """Two backfills at once, each of its own org and database, on one token limited to
    `rate`: how much of the limit the two take together, and the share of 429s."""
    windows_per_org = max(24, int(rate * seconds / 2))
    cmd = [sys.executable, "-m", "collector", "simulate", "--port", "0", "--latency", "0.005",
           "--rate-limit", str(rate), "--burst", "1", "--org", "org-one", "--org", "org-two",
           "--token", TOKENS[0]]
    env = {**os.environ, "TOKEN_ONE": TOKENS[0]}
    with server(cmd) as url:
        clis = []
        for org in ("org-one", "org-two"):
            config = tmp / f"shared-{rate}-{org}.toml"
            config.write_text(
                f'[database]\nurl = "sqlite:///{tmp / f"shared-{rate}-{org}.db"}"\n'
                f'[api]\nbase_url = "{url}"\nconcurrency = 16\n[windows]\nsize = "5m"\n'
                f'[sources]\nenabled = ["sessions"]\n[[orgs]]\nid = "{org}"\n'
                'token_env = "TOKEN_ONE"\n'
            )
            cli = [sys.executable, "-m", "collector", "--config", str(config)]
            subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
            clis.append(cli)
        until = SINCE + windows_per_org * 300
        started = time.perf_counter()
        procs = [
            subprocess.Popen([*cli, "backfill", "--since", _iso(SINCE), "--until", _iso(until)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for cli in clis
        ]
        codes = [proc.wait() for proc in procs]
        wall = time.perf_counter() - started
        requests = httpx.get(f"{url}/_sim/stats").json()["requests"]
    by_status = Counter(r["status"] for r in requests)
    return {
        "rate_limit": rate,
        "exit_codes": max(codes),
        "seconds": round(wall, 2),
        "answers": len(requests),
        "429": by_status[429],
        "share_429": by_status[429] / max(1, len(requests)),
        "ratio": by_status[200] / wall / rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="*", default=[2.0, 20.0, 100.0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--windows", type=int, default=3200,
                        help="windows of the run with no server limit")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of that run and of the bare loop")
    parser.add_argument("--shared", type=float, nargs="*", default=[20.0],
                        help="limits R at which two backfills share one token")
    parser.add_argument("--fixed", action="store_true",
                        help="also a fixed rate_limit = 10000 in each no-limit round")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            result = run(rate, args.seconds, Path(tmp))
            results.append(result)
            print(
                f"R = {rate:g}/s per token: exit {result['exit_code']:g}, "
                f"{result['per_token_rate']:.1f} answers/s on the busier token = "
                f"{100 * result['ratio']:.1f}% of R over {result['seconds']}s; "
                f"{result['429']:g} of {result['answers']:g} answers were 429 "
                f"({100 * result['share_429']:.1f}%)",
                flush=True,
            )
        for rate in args.shared:
            both = shared(rate, args.seconds, Path(tmp))
            results.append(both)
            print(f"two backfills on one token limited to R = {rate:g}/s: exit "
                  f"{both['exit_codes']:g}, together {100 * both['ratio']:.1f}% of R over "
                  f"{both['seconds']}s; {both['429']:g} of {both['answers']:g} answers were "
                  f"429 ({100 * both['share_429']:.1f}%)", flush=True)
        # no server limit: the learned rate must not hold a fast API back; alternating
        # rounds, as one round varies by a few percent on a shared machine, each process
        # against a simulator of its own (one that served many runs answers slower)
        ratios = []
        for _ in range(args.rounds):
            with simulator("--latency", "0.05") as url:
                _, collected, duration = backfill(url, Path(tmp), args.windows, "5m", 16,
                                                  '"auto"')
            fixed = None
            if args.fixed:
                with simulator("--latency", "0.05") as url:
                    _, done_fixed, took = backfill(url, Path(tmp), args.windows, "5m", 16,
                                                   10000)
                fixed = done_fixed / took
            with simulator("--latency", "0.05") as url:
                bare = bare_loop(url, args.windows, 16)
                bare_rate = args.windows / float(bare.stdout.split(" in ")[1].rstrip("s\n"))
                ratios.append(collected / duration / bare_rate)
                also = (f"; fixed rate_limit = 10000: {100 * fixed / bare_rate:.1f}%"
                        if fixed is not None else "")
                print(f"no server limit, 50 ms latency, concurrency 16, {args.windows} windows: "
                      f"{collected / duration:.1f} windows/s with rate_limit = \"auto\"; a bare "
                      f"httpx loop {bare_rate:.1f}/s; collector / bare = "
                      f"{100 * ratios[-1]:.1f}%{also}", flush=True)
        ratios.sort()
        print(f"no server limit: median collector / bare = {100 * ratios[len(ratios) // 2]:.1f}% "
              f"over {len(ratios)} rounds", flush=True)
    print(json.dumps(results, indent=2))


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


if __name__ == "__main__":
    main()
