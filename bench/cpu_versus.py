"""CPU per window of the collector in two (or more) installs, round by round against one bare
httpx loop per round, each process against a simulator of its own.

    python bench/cpu_versus.py BEFORE/bin/python AFTER/bin/python [--rounds 6]

Each install is a virtual environment of one revision (`python3 -m venv V && V/bin/pip
install .` in a checkout of it). The installs take turns first within a round, so neither
always runs later; printed: each round's ratios, then each install's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from backfill import SINCE, TOKEN, _iso, bare_loop, measured, simulator

WINDOWS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pythons", nargs="+", help="the python of each install")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {py: [] for py in args.pythons}
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(args.rounds):
            with simulator() as url:
                bare = bare_loop(url, WINDOWS, 8)
            order = args.pythons if number % 2 == 0 else args.pythons[::-1]
            for index, python in enumerate(order):
                with simulator() as url:
                    cpu = _backfill_cpu(python, url, Path(tmp) / f"r{number}-{index}")
                ratios[python].append(cpu / bare.cpu)
            print(f"round {number + 1}: bare loop {bare.cpu:.2f}s; " + "; ".join(
                f"{py}: {ratios[py][-1]:.2f}x" for py in args.pythons), flush=True)
    for python, found in ratios.items():
        print(f"{python}: median {statistics.median(found):.2f}x over {len(found)} rounds")


def _backfill_cpu(python: str, url: str, stem: Path) -> float:
    config = stem.with_suffix(".toml")
    config.write_text(
        f'[database]\nurl = "sqlite:///{stem.with_suffix(".db")}"\n'
        f'[api]\nbase_url = "{url}"\nrate_limit = 10000\nconcurrency = 8\n'
        '[windows]\nsize = "5m"\n[sources]\nenabled = ["sessions"]\n[[orgs]]\nid = "org-bench"\n'
    )
    env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
    cli = [python, "-m", "collector", "--config", str(config)]
    subprocess.run([*cli, "db", "upgrade"], check=True, env=env, capture_output=True)
    until = SINCE + WINDOWS * 300
    return measured([*cli, "backfill", "--since", _iso(SINCE), "--until", _iso(until),
                     "--concurrency", "8"], env).cpu


if __name__ == "__main__":
    main()
