"""The HTTP client the collector talks through, and the transport that lends each request a
keep-alive connection of its own.

httpx's default transport keeps one pool of connections for every thread: each request takes
the pool's lock to queue itself, to be assigned a connection and to hand it back, and every
assignment walks all the pool's connections (polling the idle ones' sockets). With a worker
thread per connection, that lock is contended on every request and the walk is repeated for
connections the request will never use. `Connections` instead keeps one single-connection
transport per concurrent request on a shelf: a request takes one off (a deque pop, atomic
without a lock), and its response puts it back when it is closed. Each transport still does
what httpx's pool does for its one connection (keep-alive expiry, reconnecting after the
server closed it, timeouts), and the shelf closes connections left idle past the same
expiry, so behaviour is httpx's own; only the bookkeeping shrinks.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from urllib.request import getproxies

import httpx

from collector import __version__
from collector.config import Config

#: Makes the transport of one connection, given the TLS settings all of them share.
TransportFactory = Callable[[ssl.SSLContext], httpx.BaseTransport]

#: Seconds an idle connection is kept (httpx's default keep-alive expiry).
KEEPALIVE = 5.0


def single_connection(tls: ssl.SSLContext) -> httpx.BaseTransport:
    return httpx.HTTPTransport(
        verify=tls,
        limits=httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE
        ),
    )


class Connections(httpx.BaseTransport):
    """Connections lent whole to one request at a time, about `keep` of them kept idle.

    Nothing here caps the requests in flight: the caller does (`DevinClient` sends at most
    `concurrency` at once), and the connections open are those in flight plus the idle ones.
    A connection handed back beyond `keep` is closed, and so is one left idle longer than
    `KEEPALIVE` (the most recently used is lent first, so the others would otherwise sit
    unused while the server drops them)."""

    def __init__(
        self,
        keep: int,
        make: TransportFactory = single_connection,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep = keep
        self._make = make
        self._clock = clock
        # built once (loading the CA bundle costs tens of milliseconds), as httpx's own pool does
        self._tls = httpx.create_ssl_context()
        #: idle transports, each with when it was handed back; the newest on the right
        self._idle: deque[tuple[httpx.BaseTransport, float]] = deque()
        self._open: set[httpx.BaseTransport] = set()
        self._lock = threading.Lock()  # guards `_open` and `_closed`, not the hot path
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        idle = self._idle
        try:
            transport = idle.pop()[0]
        except IndexError:
            transport = self._new()
        if idle and idle[0][1] < self._clock() - KEEPALIVE:
            self._expire()
        try:
            response = transport.handle_request(request)
            if not isinstance(response.stream, httpx.SyncByteStream):
                raise TypeError("Connections lends synchronous transports only")
        except BaseException:
            self._give_back(transport)  # its pool has already dropped a broken connection
            raise
        response.stream = _Lent(response.stream, lambda: self._give_back(transport))
        return response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            transports, self._open = self._open, set()
            self._idle.clear()
        for transport in transports:
            transport.close()

    def _new(self) -> httpx.BaseTransport:
        transport = self._make(self._tls)
        with self._lock:
            if self._closed:
                transport.close()
                raise RuntimeError("the HTTP client is closed")
            self._open.add(transport)
        return transport

    def _give_back(self, transport: httpx.BaseTransport) -> None:
        if len(self._idle) < self._keep and not self._closed:
            self._idle.append((transport, self._clock()))
            return
        self._discard(transport)

    def _expire(self) -> None:
        """Close the transports idle longer than `KEEPALIVE` (the oldest are on the left)."""
        cutoff = self._clock() - KEEPALIVE
        while True:
            try:
                transport, since = self._idle.popleft()
            except IndexError:
                return
            if since >= cutoff:
                self._idle.appendleft((transport, since))
                return
            self._discard(transport)

    def _discard(self, transport: httpx.BaseTransport) -> None:
        with self._lock:
            self._open.discard(transport)
        transport.close()


class _Lent(httpx.SyncByteStream):
    """A response body that hands its connection back to the shelf once closed."""

    def __init__(self, stream: httpx.SyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


def make_http_client(
    config: Config,
    *,
    concurrency: int | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The httpx client `config`'s `[api]` describes: its base URL and timeouts, no
    redirects, `concurrency` connections (a `Connections` shelf unless `transport` is given
    or the environment names a proxy)."""
    api = config.api
    connections = concurrency or api.concurrency
    timeout = httpx.Timeout(api.timeout, connect=api.connect_timeout)
    if transport is None and not proxied():
        # a connection per worker instead of one pool they all lock (see `Connections`);
        # httpx applies proxies from the environment only to a pool of its own making
        transport = Connections(connections)
    return httpx.Client(
        base_url=api.base_url,
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        ),
        headers={"User-Agent": f"collector/{__version__}", "Accept": "application/json"},
        follow_redirects=False,
        transport=transport,
    )


def proxied() -> bool:
    """Whether the environment names a proxy for HTTP or HTTPS requests (`HTTPS_PROXY`,
    `ALL_PROXY` and the like, as httpx reads them); `NO_PROXY` alone names none."""
    found = getproxies()
    return any(found.get(scheme) for scheme in ("http", "https", "all"))
