"""How close to C/L can any httpx client get on this machine? The ceiling for measurement 1
of bench/backfill.py, measured without the collector.

Clients: the bare thread-pool loop (bench/bare_loop.py) and an httpx.AsyncClient loop, both
with C = 16 requests in flight. Servers: the simulator (`collector simulate --latency`) and a
minimal asyncio server that answers a fixed body L after each request arrives, with no
parsing beyond the blank line that ends the headers.

    .venv/bin/python bench/http_ceiling.py
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backfill import ROOT, SINCE, TOKEN, server, simulator

LATENCY, CONCURRENCY, WINDOWS = 0.05, 16, 3200
IDEAL = CONCURRENCY / LATENCY

_MINIMAL_SERVER = """
import asyncio, sys, time
BODY = b'{"sessions_created_count": 1}'
ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: "
          + str(len(BODY)).encode() + b"\\r\\n\\r\\n" + BODY)
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            arrived = time.monotonic()
            await asyncio.sleep(max(0.0, arrived + LATENCY - time.monotonic()))
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()
LATENCY = float(sys.argv[1])
asyncio.run(main())
"""


def minimal_server() -> AbstractContextManager[str]:
    return server([sys.executable, "-c", _MINIMAL_SERVER, str(LATENCY)])


def threads(url: str) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bare_loop.py"), url, "org-bench", str(SINCE),
         str(SINCE + WINDOWS * 300), "300", str(CONCURRENCY)],
        capture_output=True, text=True, check=True, env={"DEVIN_API_TOKEN": TOKEN},
    ).stdout
    found = re.search(r"in ([\d.]+)s", out)
    assert found is not None, out
    return WINDOWS / float(found.group(1))


def asynchronous(url: str) -> float:
    async def run() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(start: int) -> None:
                async with gate:
                    response = await client.get(
                        "/v3/organizations/org-bench/metrics/sessions",
                        params={"time_after": start, "time_before": start + 300},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                    response.read()

            started = time.perf_counter()
            await asyncio.gather(*(one(SINCE + i * 300) for i in range(WINDOWS)))
            return WINDOWS / (time.perf_counter() - started)

    return asyncio.run(run())


def main() -> None:
    print(f"C = {CONCURRENCY}, L = {LATENCY * 1000:.0f} ms: C/L = {IDEAL:.0f} requests/s")
    for name, start in (("simulator", lambda: simulator("--latency", str(LATENCY))),
                         ("minimal asyncio server", minimal_server)):
        with start() as url:
            for client, measure in (("httpx, 16 threads", threads),
                                    ("httpx.AsyncClient", asynchronous)):
                rate = measure(url)
                print(f"{name:>22} / {client:<18}: {rate:6.1f}/s = {rate / IDEAL:.1%} of C/L")


if __name__ == "__main__":
    main()
