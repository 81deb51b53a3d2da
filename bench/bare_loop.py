"""The baseline for CPU per window: a bare httpx loop fetching the same windows as a backfill,
with the same concurrency, reading each body and doing nothing else (no parsing, no storing).

    python bench/bare_loop.py BASE_URL ORG_ID SINCE UNTIL SIZE CONCURRENCY

The token comes from $DEVIN_API_TOKEN.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def main() -> None:
    base_url, org, since, until, size, concurrency = sys.argv[1:7]
    headers = {"Authorization": f"Bearer {os.environ['DEVIN_API_TOKEN']}"}
    starts = range(int(since), int(until), int(size))
    workers = int(concurrency)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(base_url=base_url, limits=limits, timeout=30) as client:

        def fetch(start: int) -> int:
            response = client.get(
                f"/v3/organizations/{org}/metrics/sessions",
                params={"time_after": start, "time_before": start + int(size)},
                headers=headers,
            )
            return len(response.content)

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            total = sum(pool.map(fetch, starts))
        elapsed = time.perf_counter() - started
    print(f"{len(starts)} windows, {total} bytes in {elapsed:.3f}s")


if __name__ == "__main__":
    main()
