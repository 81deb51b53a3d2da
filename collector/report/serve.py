"""`collector report --serve`: the report's page over HTTP, rendered afresh on every load.

The standard library's threading HTTP server, nothing more: ``GET /`` (and ``HEAD /``)
renders the page from the database at that moment, with the same call as the file mode;
any other path is 404. The page is never cached (``Cache-Control: no-store``), and its
Content-Security-Policy lets it run only its own inline style and script and fetch nothing.
There is no authentication: the server listens on loopback unless told otherwise.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import re
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from collector.errors import CollectorError, ConfigError
from collector.report import Report

__all__ = ["ReportServer", "content_policy", "listen", "serve_until_stopped"]

log = logging.getLogger("collector.report")

#: Renders the report as seen at a moment (Unix seconds).
Render = Callable[[float], Report]

_STYLE = re.compile(r"<style>(.*?)</style>", re.S)
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')

_NONE = "'none'"
#: Every answer that is not the page: nothing in it may load or run.
_NOTHING = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_policy(html: str) -> str:
    """The Content-Security-Policy of the page `html`: nothing fetched, and only its own
    inline ``<style>`` and ``<script>`` (by their hashes) and ``style`` attributes (the
    legend's colours, by theirs, which takes ``'unsafe-hashes'``)."""
    styles = sorted({_hash(s) for s in _STYLE.findall(html)})
    attributes = sorted({_hash(unescape(a)) for a in _STYLE_ATTRIBUTE.findall(html)})
    scripts = sorted({_hash(s) for s in _SCRIPT.findall(html)})
    style = [*styles, *(["'unsafe-hashes'", *attributes] if attributes else [])]
    return (f"{_NOTHING}; style-src {' '.join(style or [_NONE])}; "
            f"script-src {' '.join(scripts or [_NONE])}")


class ReportServer(ThreadingHTTPServer):
    """Serves `render(clock())` at ``/``, one thread per request."""

    daemon_threads = True  # stopping never waits on a reader's idle connection

    def __init__(self, host: str, port: int, render: Render,
                 clock: Callable[[], float] = time.time) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.render = render
        self.clock = clock
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn), which can take
        # seconds on a host without DNS; the name is not needed
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: ReportServer
    server_version = "collector-report"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        if urlsplit(self.path).path != "/":
            self._send(404, b"Not found: the report is at /\n", with_body)
            log.debug("report: %s %s 404", self.command, self.path)
            return
        started = time.perf_counter()
        try:
            report = self.server.render(self.server.clock())
        except ConfigError as exc:  # the selection has no data in the range as of now
            log.warning("report: %s / 500: %s", self.command, exc)
            self._send(500, f"The report cannot be drawn: {exc}\n".encode(), with_body)
            return
        except (CollectorError, SQLAlchemyError) as exc:
            log.error("report: %s / 500: %s", self.command, exc)
            self._send(500, b"The report cannot be drawn: the database could not be read "
                            b"(the collector's log says why). Try again later.\n", with_body)
            return
        except Exception:
            log.exception("report: %s / 500: the page could not be rendered", self.command)
            self._send(500, b"The report cannot be drawn: an internal error (the collector's "
                            b"log has it).\n", with_body)
            return
        body = report.html.encode()
        self._send(200, body, with_body, html=report.html)
        log.info("report: %s / 200 (%d KB: %d org(s), %d charts, %s to %s) in %.2fs",
                 self.command, len(body) // 1024, len(report.orgs), report.charts,
                 report.first_day, report.last_day, time.perf_counter() - started)

    def _send(self, status: int, body: bytes, with_body: bool, html: str | None = None) -> None:
        try:
            self.send_response(status)
            kind = "text/html" if html is not None else "text/plain"
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy",
                             _NOTHING if html is None else content_policy(html))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if with_body:
                self.wfile.write(body)
        except ConnectionError:  # the reader went away; nothing to tell it
            log.debug("report: the client closed the connection before the answer")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Answers are logged by `_answer`, with their time."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("report: %s: %s", self.address_string(), format % args)


def listen(host: str, port: int, render: Render,
           clock: Callable[[], float] = time.time) -> ReportServer:
    """A server bound to `host`:`port` (0: a free port). An address that cannot be bound
    raises `ConfigError` naming it."""
    try:
        return ReportServer(host, port, render, clock)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = "the port is already in use"
        else:
            problem = exc.strerror or str(exc)
        raise ConfigError(f"--serve: cannot listen on {host}:{port}: {problem}. Pick another "
                          "port (0 picks a free one) or --host") from None


def serve_until_stopped(server: ReportServer, stop: threading.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM (when called from the main thread) or until `stop` is
    set, then close the server."""
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("report: received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="report-server", daemon=True)
    worker.start()
    try:
        while not stop.wait(0.5):  # short steps: a signal handler runs between them
            pass
    finally:
        server.shutdown()
        server.server_close()
        worker.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
