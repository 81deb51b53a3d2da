"""The transport that lends each request a connection of its own, over real sockets."""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from collector.config import parse_config
from collector.connections import (
    KEEPALIVE,
    Connections,
    make_http_client,
    proxied,
    single_connection,
)
from tests.helpers import FakeClock, config_data, wait_for


class Recorder(ThreadingHTTPServer):
    """An HTTP/1.1 server that answers every GET with its path and counts, per client port,
    the requests each connection carried and the connections that ended."""

    daemon_threads = True

    def __init__(self, close_each: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.close_each = close_each
        #: when set, every answer waits until that many requests are in (one connection each)
        self.together: threading.Barrier | None = None
        self.requests: Counter[int] = Counter()
        self.lines: list[str] = []
        self.ended = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # or each answer waits for a delayed ACK
    server: Recorder

    def do_GET(self) -> None:
        if self.server.together is not None:
            self.server.together.wait(timeout=10)
        with self.server.lock:
            self.server.requests[self.client_address[1]] += 1
            self.server.lines.append(self.requestline)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.server.close_each:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:  # a proxy tunnel: recorded, refused
        with self.server.lock:
            self.server.lines.append(self.requestline)
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.ended += 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _fetch_all(client: httpx.Client, paths: list[str], threads: int) -> list[str]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: client.get(p).text, paths))


def test_each_worker_keeps_one_connection_alive(recorder: Recorder) -> None:
    paths = [f"/w/{i}" for i in range(400)]
    with httpx.Client(base_url=recorder.url, transport=Connections(4)) as client:
        assert _fetch_all(client, paths, threads=4) == paths
        # keep-alive: 400 requests over no more connections than requests in flight
        assert 1 <= len(recorder.requests) <= 4
        assert sum(recorder.requests.values()) == 400
        assert recorder.ended == 0
    # closing the client closes every connection it kept
    wait_for(lambda: recorder.ended == len(recorder.requests), timeout=10)


def test_connections_beyond_keep_are_closed_when_handed_back(recorder: Recorder) -> None:
    paths = [f"/w/{i}" for i in range(200)]
    with httpx.Client(base_url=recorder.url, transport=Connections(2)) as client:
        assert _fetch_all(client, paths, threads=8) == paths
        opened = len(recorder.requests)
        assert opened > 2
        # at most `keep` stay open once the burst is over
        wait_for(lambda: opened - recorder.ended <= 2, timeout=10)
        assert client.get("/after").text == "/after"


def test_connections_idle_past_the_keep_alive_are_closed(recorder: Recorder) -> None:
    clock = FakeClock(1000.0)
    with httpx.Client(base_url=recorder.url, transport=Connections(4, clock=clock)) as client:
        recorder.together = threading.Barrier(4)  # four requests in flight at once
        paths = [f"/w/{i}" for i in range(4)]
        assert _fetch_all(client, paths, threads=4) == paths
        recorder.together = None
        assert len(recorder.requests) == 4
        clock.advance(KEEPALIVE - 0.5)
        recorder.together = threading.Barrier(2)  # two of them used again
        assert _fetch_all(client, ["/a", "/b"], threads=2) == ["/a", "/b"]
        recorder.together = None
        assert recorder.ended == 0  # none was idle long enough
        clock.advance(1.0)
        assert client.get("/late").text == "/late"
        # of the four, two sat idle past the keep-alive: closed; the two used half a second
        # ago are kept (one lent for this request)
        wait_for(lambda: recorder.ended >= 2, timeout=10)
        assert client.get("/again").text == "/again"
        assert recorder.ended == 2
        assert len(recorder.requests) == 4


def test_a_connection_the_server_closes_is_replaced() -> None:
    server = Recorder(close_each=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        paths = [f"/w/{i}" for i in range(60)]
        with httpx.Client(base_url=server.url, transport=Connections(3)) as client:
            assert _fetch_all(client, paths, threads=3) == paths
        assert sorted(server.requests.values()) == [1] * 60  # a fresh connection each time
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_request_lends_its_transport_again(recorder: Recorder) -> None:
    refused = Recorder()
    port = refused.server_address[1]
    refused.server_close()  # nothing listens there now
    made: list[httpx.BaseTransport] = []

    def make(tls: ssl.SSLContext) -> httpx.BaseTransport:
        made.append(single_connection(tls))
        return made[-1]

    with httpx.Client(transport=Connections(1, make)) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                client.get(f"http://127.0.0.1:{port}/")
        for i in range(3):
            assert client.get(f"{recorder.url}/{i}").text == f"/{i}"
    assert len(made) == 1  # one transport lent again and again, none left behind
    assert len(recorder.requests) == 1


def test_the_collector_client_uses_it_and_leaves_proxies_to_httpx(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "https://devin.invalid"
    monkeypatch.setenv("HTTPS_PROXY", recorder.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config = parse_config(config_data(base, "sqlite://"), {}, source="t")
    with make_http_client(config) as client, pytest.raises(httpx.ProxyError):
        # with a proxy in the environment, httpx's own pool tunnels through it
        client.get(f"{base}/v3/x")
    assert recorder.lines == ["CONNECT devin.invalid:443 HTTP/1.1"]
    monkeypatch.delenv("HTTPS_PROXY")
    config = parse_config(config_data(recorder.url, "sqlite://"), {}, source="t")
    with make_http_client(config, concurrency=3) as client:
        paths = [f"/v3/{i}" for i in range(90)]
        assert _fetch_all(client, paths, threads=3) == paths
    assert 1 <= len(recorder.requests) <= 3  # the CONNECT above is not counted


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, False),
        ({"NO_PROXY": "localhost,.internal"}, False),
        ({"no_proxy": "*"}, False),
        ({"FTP_PROXY": "http://proxy:3128"}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128", "NO_PROXY": "devin.ai"}, True),
        ({"ALL_PROXY": "socks5://proxy:1080"}, True),
    ],
)
def test_only_a_proxy_for_http_or_https_keeps_httpx_pool(
    variables: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert proxied() is expected
