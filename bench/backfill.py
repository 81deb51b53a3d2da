"""Backfill performance against the simulator on loopback, each figure a ratio of one run.

    .venv/bin/python bench/backfill.py [--quick]

1. throughput with simulated latency L and concurrency C, against the ideal C / L;
2. throughput under a server-side limit of R requests/s, against R, and the share of 429s;
3. CPU per window of `collector backfill` against a bare httpx loop on the same windows
   (bench/bare_loop.py: fetch and read, no parsing or storing), both whole processes;
4. peak RSS of a 100,000-window backfill.

The simulator runs in its own process (`collector simulate`), so its CPU is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TOKEN = "cog_bench_token"  # noqa: S105 (the simulator's throw-away token)
SINCE = 1_759_276_800  # 2025-10-01 00:00 UTC
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    wall: float
    cpu: float
    maxrss_mb: float
    stdout: str
    stderr: str


def measured(cmd: list[str], env: dict[str, str]) -> Measured:
    """Run `cmd` to completion; its wall time, CPU (user + system) and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Measured(
            wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read(), err.read()
        )
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{result.stderr[-2000:]}")
    return result


@contextmanager
def server(cmd: list[str]) -> Iterator[str]:
    """Start a server process that prints its URL on its first line; yield the URL."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"{cmd[:4]} did not start: {line!r}")
    try:
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def simulator(*args: str) -> AbstractContextManager[str]:
    return server(
        [sys.executable, "-m", "collector", "simulate", "--port", "0", "--org", "org-bench",
         "--token", TOKEN, *args]
    )


def backfill(
    base_url: str, tmp: Path, windows: int, size: str, concurrency: int, rate_limit: float
) -> tuple[Measured, int, float]:
    """`collector backfill` of `windows` windows into a new SQLite file."""
    seconds = {"5m": 300, "1h": 3600}[size]
    db = tmp / f"bench-{time.monotonic_ns()}.db"
    config = tmp / f"bench-{time.monotonic_ns()}.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        f'[api]\nbase_url = "{base_url}"\nrate_limit = {rate_limit}\n'
        f"concurrency = {concurrency}\n"
        f'[windows]\nsize = "{size}"\n[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-bench"\n'
    )
    env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "collector", "--config", str(config)]
    subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
    until = SINCE + windows * seconds
    result = measured(
        [
            *cli,
            "backfill",
            "--since",
            str(_iso(SINCE)),
            "--until",
            str(_iso(until)),
            "--concurrency",
            str(concurrency),
        ],
        env,
    )
    found = re.search(r"(\d+) of (\d+) window\(s\) collected in ([\d.]+)s", result.stdout)
    assert found is not None, result.stdout
    collected, duration = int(found.group(1)), float(found.group(3))
    assert collected == windows, result.stdout
    return result, collected, duration


def bare_loop(base_url: str, windows: int, concurrency: int) -> Measured:
    return measured(
        [
            sys.executable,
            str(ROOT / "bench" / "bare_loop.py"),
            base_url,
            "org-bench",
            str(SINCE),
            str(SINCE + windows * 300),
            "300",
            str(concurrency),
        ],
        {**os.environ, "DEVIN_API_TOKEN": TOKEN},
    )


def stats(base_url: str) -> list[dict[str, object]]:
    return list(httpx.get(f"{base_url}/_sim/stats").json()["requests"])


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        choices=[1, 2, 3, 4],
        help="run only these measurements (repeatable)",
    )
    args = parser.parse_args()
    only = set(args.only or [1, 2, 3, 4])
    scale = 0.1 if args.quick else 1.0
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)

        latency, concurrency = 0.05, 16
        n = int(3200 * scale)
        if 1 in only:
            measure_latency(tmp, n, latency, concurrency, results)
        if 2 in only:
            measure_rate_limit(tmp, int(1500 * scale), 100.0, results)
        if 3 in only:
            measure_cpu(tmp, int(10_000 * scale), results)
        if 4 in only:
            measure_rss(tmp, int(100_000 * scale), results)
    print(json.dumps(results, indent=2))


def measure_latency(
    tmp: Path, n: int, latency: float, concurrency: int, results: dict[str, object]
) -> None:
    with simulator("--latency", str(latency)) as url:
        _, done, duration = backfill(url, tmp, n, "5m", concurrency, 10_000)
        bare = bare_loop(url, n, concurrency)
        elapsed = re.search(r"in ([\d.]+)s", bare.stdout)
        assert elapsed is not None, bare.stdout
        bare_rate = n / float(elapsed.group(1))
    ideal = concurrency / latency
    rate = done / duration
    results["latency"] = {
        "windows": done,
        "rate": rate,
        "ideal": ideal,
        "ratio": rate / ideal,
        "bare_loop_rate": bare_rate,
        "ratio_to_bare_loop": rate / bare_rate,
    }
    print(
        f"1. latency {latency * 1000:.0f} ms, concurrency {concurrency}: "
        f"{rate:.1f} windows/s vs C/L = {ideal:.0f}/s -> {rate / ideal:.1%} "
        f"(a bare httpx loop on the same windows: {bare_rate:.1f}/s, {bare_rate / ideal:.1%}; "
        f"collector / bare = {rate / bare_rate:.1%})"
    )


def measure_rate_limit(tmp: Path, n: int, limit: float, results: dict[str, object]) -> None:
    with simulator("--rate-limit", str(limit), "--latency", "0.005") as url:
        _, done, duration = backfill(url, tmp, n, "5m", 16, limit)
        seen = stats(url)
    throttled = sum(1 for r in seen if r["status"] == 429)
    rate = done / duration
    results["rate_limit"] = {
        "windows": done,
        "rate": rate,
        "limit": limit,
        "ratio": rate / limit,
        "requests": len(seen),
        "429": throttled,
        "share_429": throttled / len(seen),
    }
    print(
        f"2. server limit {limit:.0f}/s: {rate:.1f} windows/s -> {rate / limit:.1%} of R;"
        f" {throttled} of {len(seen)} requests answered 429 "
        f"({throttled / len(seen):.2%})"
    )


def measure_cpu(tmp: Path, n: int, results: dict[str, object], rounds: int = 3) -> None:
    """Alternate the two processes `rounds` times, each against a simulator of its own
    (one that has served many runs keeps every request it answered, and grows slower,
    which would weigh on whichever process comes later); report every ratio and their
    median (a 2-core machine shared with the simulator is noisy)."""
    ratios = []
    for _ in range(rounds):
        with simulator() as url:
            bare = bare_loop(url, n, 8)
        with simulator() as url:
            ours, _, _ = backfill(url, tmp, n, "5m", 8, 10_000)
        ratios.append((bare.cpu / n * 1000, ours.cpu / n * 1000, ours.cpu / bare.cpu))
    median = sorted(ratios, key=lambda r: r[2])[len(ratios) // 2]
    results["cpu"] = {
        "windows": n,
        "rounds": [
            {"bare_ms_per_window": b, "collector_ms_per_window": c, "ratio": r}
            for b, c, r in ratios
        ],
        "median_ratio": median[2],
    }
    for b, c, r in ratios:
        print(f"3. CPU per window over {n} windows: bare httpx loop {b:.3f} ms, "
              f"collector backfill {c:.3f} ms -> {r:.2f}x")
    print(f"3. median of {rounds}: {median[2]:.2f}x")


def measure_rss(tmp: Path, n: int, results: dict[str, object]) -> None:
    with simulator() as url:
        big, done, duration = backfill(url, tmp, n, "5m", 16, 100_000)
    results["rss"] = {"windows": done, "maxrss_mb": big.maxrss_mb, "seconds": duration}
    print(
        f"4. peak RSS of a {done}-window backfill: {big.maxrss_mb:.1f} MB "
        f"({done / duration:.0f} windows/s)"
    )


if __name__ == "__main__":
    main()
