"""HTTP plumbing of the local API simulator (:mod:`collector.sim`).

The threaded server (tracks open connections so :meth:`SimServer.close_connections` can
drop idle keep-alives on stop), the request-handler base with the response helpers the
API and admin endpoints share, and query-string helpers. Stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from collector.sim.faults import abort_connection

if TYPE_CHECKING:
    from collector.sim.server import Simulator

__all__ = ["HandlerBase", "SegmentFilters", "SimServer", "int_or_none", "one", "segment_filters"]


def one(q: Mapping[str, list[str]], key: str) -> str | None:
    """The last value of ``key`` in a ``parse_qs`` result, or None."""
    values = q.get(key)
    return values[-1] if values else None


class SegmentFilters(TypedDict):
    user_ids: list[str] | None
    service_user_ids: list[str] | None
    playbook_id: str | None


def segment_filters(q: Mapping[str, list[str]]) -> SegmentFilters:
    """The segment filters of a metrics query (a ``parse_qs`` result), as
    :meth:`Simulator.truth` takes them."""
    return {
        "user_ids": q.get("user_ids"),
        "service_user_ids": q.get("service_user_ids"),
        "playbook_id": one(q, "playbook_id"),
    }


def int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once
    sim: Simulator

    def __init__(self, addr: tuple[str, int], sim: Simulator, handler: type[HandlerBase]) -> None:
        self.sim = sim
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients (and reset faults) drop connections all the time."""

    def close_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class HandlerBase(BaseHTTPRequestHandler):
    """Connection bookkeeping and response helpers; the routes live in subclasses."""

    protocol_version = "HTTP/1.1"
    server_version = "DevinSim/1.0"
    timeout = 120  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: SimServer

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def read_body(self) -> bytes:
        """The request body (empty without a positive Content-Length)."""
        length = int_or_none(self.headers.get("Content-Length")) or 0
        return self.rfile.read(length) if length > 0 else b""

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        declared_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        length = len(body) if declared_length is None else declared_length
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        self.send(status, json.dumps(obj).encode())

    def problem(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        body = {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": urlsplit(self.path).path,
        }
        self.send(status, json.dumps(body).encode(), "application/problem+json", headers)

    def abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError, ValueError):
            self.rfile.close()  # the socket only really closes once its makefile is closed
        abort_connection(self.connection)
