"""Local HTTP simulator of ``GET /v3/organizations/{org_id}/metrics/sessions``.

For tests, the demo and benchmarks only; it never talks to the real API. Stdlib only.

Check order of the metrics endpoint: 401 (missing/unknown bearer token), 404 (unknown
org), 403 (token does not cover the org or lacks ViewOrgMetrics), 422 (missing or
non-integer ``time_after``/``time_before``), 400 (empty window or longer than
``max_range_days``), 429 (per-token token bucket), take the first matching injected
fault, ``latency`` sleep (faulted answers get it too), then the fault's answer or 200 with
:meth:`SyntheticData.metrics` at the simulator clock. Requests rejected before the fault
stage do not consume faults.

Admin endpoints (no auth, meant for loopback): ``POST/DELETE /_sim/faults``,
``GET/DELETE /_sim/stats``, ``POST /_sim/clock`` (``{"now": t}`` freezes the clock,
``{"offset": s}`` runs real time shifted by ``s``), ``GET /_sim/truth?org_id=...``.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from collector.simdata import SyntheticData
from collector.simfaults import Fault, FaultQueue, abort_connection, fault_status, perform

__all__ = ["Fault", "RequestRecord", "Simulator", "TokenGrant", "serve"]

DEFAULT_ORGS: tuple[str, ...] = ("org-alpha", "org-beta")
DEFAULT_TOKEN = "cog_sim_token"  # noqa: S105 - the simulator's well-known test token
_METRICS_PREFIX = "/v3/organizations/"
_METRICS_SUFFIX = "/metrics/sessions"


@dataclass
class TokenGrant:
    """What a bearer token may see: ``orgs=None`` means every org."""

    orgs: frozenset[str] | None
    can_view_metrics: bool = True


@dataclass(frozen=True)
class RequestRecord:
    """One API request seen by the simulator (admin calls are not recorded).

    ``status`` is the HTTP status sent; 0 for ``reset``/``truncate`` faults. ``at`` is the
    real wall-clock time (``time.time()``) the request arrived, not the simulator clock.
    ``org_id`` is None for unknown paths; the time bounds are None when not integers.
    """

    org_id: str | None
    time_after: int | None
    time_before: int | None
    user_ids: tuple[str, ...]
    service_user_ids: tuple[str, ...]
    playbook_id: str | None
    status: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["user_ids"] = list(self.user_ids)
        d["service_user_ids"] = list(self.service_user_ids)
        return d


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once
    sim: Simulator

    def __init__(self, addr: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients (and reset faults) drop connections all the time."""

    def close_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _one(q: Mapping[str, list[str]], key: str) -> str | None:
    values = q.get(key)
    return values[-1] if values else None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DevinSim/1.0"
    timeout = 120  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _Server

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

    # -- plumbing -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = _int_or_none(self.headers.get("Content-Length")) or 0
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

    def _json(self, status: int, obj: Any) -> None:
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

    # -- verbs --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._read_body()
        path = urlsplit(self.path).path
        if path.startswith("/_sim/"):
            self._admin("GET", path, b"")
        else:
            self._api()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._other("POST")

    def do_DELETE(self) -> None:
        self._other("DELETE")

    def do_PUT(self) -> None:
        self._other("PUT")

    def do_PATCH(self) -> None:
        self._other("PATCH")

    def _other(self, method: str) -> None:
        body = self._read_body()
        path = urlsplit(self.path).path
        if path.startswith("/_sim/"):
            self._admin(method, path, body)
            return
        sim = self.server.sim
        if path.startswith(_METRICS_PREFIX) and path.endswith(_METRICS_SUFFIX):
            self.problem(405, f"method {method} not allowed", {"Allow": "GET"})
            sim._record(None, {}, 405)
        else:
            self.problem(404, f"no route for {method} {path}")
            sim._record(None, {}, 404)

    # -- the API endpoint ---------------------------------------------------------------

    def _api(self) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        path = split.path
        q = parse_qs(split.query, keep_blank_values=True)
        org_id: str | None = None
        if path.startswith(_METRICS_PREFIX) and path.endswith(_METRICS_SUFFIX):
            middle = path[len(_METRICS_PREFIX) : -len(_METRICS_SUFFIX)]
            if middle and "/" not in middle:
                org_id = middle
        if org_id is None:
            sim._record(None, q, 404)
            self.problem(404, f"no route for GET {path}")
            return

        def fail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
            sim._record(org_id, q, status)
            self.problem(status, detail, headers)

        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        grant = sim._tokens.get(token) if scheme.lower() == "bearer" and token else None
        if grant is None:
            fail(401, "missing, invalid or expired bearer token")
            return
        if org_id not in sim._orgs:
            fail(404, f"organization {org_id} not found")
            return
        if not grant.can_view_metrics or (grant.orgs is not None and org_id not in grant.orgs):
            fail(403, f"token lacks the ViewOrgMetrics permission for organization {org_id}")
            return
        errors: list[dict[str, Any]] = []
        bounds: dict[str, int] = {}
        for name in ("time_after", "time_before"):
            raw = _one(q, name)
            value = _int_or_none(raw)
            if raw is None:
                errors.append(
                    {"type": "missing", "loc": ["query", name], "msg": "Field required",
                     "input": None}
                )  # fmt: skip
            elif value is None:
                errors.append(
                    {"type": "int_parsing", "loc": ["query", name], "input": raw,
                     "msg": "Input should be a valid integer, unable to parse string as an integer"}
                )  # fmt: skip
            else:
                bounds[name] = value
        if errors:
            sim._record(org_id, q, 422)
            self._json(422, {"detail": errors})
            return
        after, before = bounds["time_after"], bounds["time_before"]
        if after >= before:
            fail(400, "time_after must be earlier than time_before")
            return
        if before - after > sim.max_range_days * 86_400:
            fail(400, f"time range must not exceed {sim.max_range_days} days")
            return
        wait = sim._take_token(token)
        if wait is not None:
            fail(429, "rate limit exceeded", {"Retry-After": str(wait)})
            return
        fault = sim._faults.take(org_id)
        if sim.latency > 0:
            time.sleep(sim.latency)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None

        def real_body() -> dict[str, Any]:
            return sim._data.metrics(
                org_id,
                after,
                before,
                now=int(sim._clock()),
                user_ids=q.get("user_ids"),
                service_user_ids=q.get("service_user_ids"),
                playbook_id=_one(q, "playbook_id"),
            )

        if fault is None:
            body = real_body()
            sim._record(org_id, q, 200)
            self._json(200, body)
        else:
            sim._record(org_id, q, fault_status(fault))
            perform(fault, self, real_body)

    # -- admin --------------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        sim = self.server.sim
        try:
            payload: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            self.problem(400, "request body is not JSON")
            return
        route = (method, path.rstrip("/"))
        if route == ("POST", "/_sim/faults"):
            items = payload if isinstance(payload, list) else [payload]
            try:
                faults = [Fault.from_dict(item) for item in items]
            except (TypeError, ValueError) as exc:
                self.problem(400, f"bad fault: {exc}")
                return
            sim.inject(*faults)
            self._json(200, {"faults": [f.to_dict() for f in sim._faults.pending()]})
        elif route == ("GET", "/_sim/faults"):
            self._json(200, {"faults": [f.to_dict() for f in sim._faults.pending()]})
        elif route == ("DELETE", "/_sim/faults"):
            sim.clear_faults()
            self._json(200, {"faults": []})
        elif route == ("GET", "/_sim/stats"):
            self._json(200, {"requests": [r.to_dict() for r in sim.requests]})
        elif route == ("DELETE", "/_sim/stats"):
            sim.reset_stats()
            self._json(200, {"requests": []})
        elif route == ("POST", "/_sim/clock"):
            self._admin_clock(payload)
        elif route == ("GET", "/_sim/truth"):
            self._admin_truth()
        else:
            self.problem(404, f"no admin route for {method} {path}")

    def _admin_clock(self, payload: Any) -> None:
        sim = self.server.sim
        try:
            if isinstance(payload, dict) and payload.get("now") is not None:
                frozen = float(payload["now"])
                sim.set_clock(lambda: frozen)
            elif isinstance(payload, dict) and "offset" in payload:
                offset = float(payload["offset"] or 0.0)
                sim.set_clock(lambda: time.time() + offset)
            else:
                self.problem(400, 'expected {"now": epoch_seconds} or {"offset": seconds}')
                return
        except (TypeError, ValueError):
            self.problem(400, "clock values must be numbers")
            return
        self._json(200, {"now": sim.now()})

    def _admin_truth(self) -> None:
        sim = self.server.sim
        q = parse_qs(urlsplit(self.path).query)
        org_id = _one(q, "org_id")
        after = _int_or_none(_one(q, "time_after"))
        before = _int_or_none(_one(q, "time_before"))
        if org_id is None or after is None or before is None:
            self.problem(400, "org_id, time_after and time_before (integers) are required")
            return
        self._json(
            200,
            sim.truth(
                org_id,
                after,
                before,
                user_ids=q.get("user_ids"),
                service_user_ids=q.get("service_user_ids"),
                playbook_id=_one(q, "playbook_id"),
            ),
        )


class Simulator:
    """The simulated API server; see the module docstring for its behaviour."""

    def __init__(
        self,
        *,
        data: SyntheticData | None = None,
        orgs: Iterable[str] = DEFAULT_ORGS,
        tokens: Mapping[str, TokenGrant] | None = None,
        clock: Callable[[], float] = time.time,
        latency: float = 0.0,
        rate_limit: float | None = None,
        burst: float | None = None,
        max_range_days: int = 100,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("rate_limit must be positive")
        self._data = data if data is not None else SyntheticData(seed=0)
        self._orgs = frozenset(orgs)
        self._tokens: dict[str, TokenGrant] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: TokenGrant(None)}
        )
        self._clock = clock
        self.latency = latency
        self.rate_limit = rate_limit
        self.burst = burst if burst is not None else max(1.0, rate_limit or 1.0)
        self.max_range_days = max_range_days
        self._faults = FaultQueue()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._buckets: dict[str, tuple[float, float]] = {}  # token -> (level, monotonic)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((host, port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02},
            name="devin-simulator", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- clock, data, faults ------------------------------------------------------------

    @property
    def data(self) -> SyntheticData:
        return self._data

    def set_clock(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    def inject(self, *faults: Fault) -> None:
        self._faults.add(faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    def truth(
        self,
        org_id: str,
        time_after: int,
        time_before: int,
        user_ids: Iterable[str] | None = None,
        service_user_ids: Iterable[str] | None = None,
        playbook_id: str | None = None,
    ) -> dict[str, Any]:
        """What the endpoint answers right now (ignoring faults) for these arguments."""
        return self._data.metrics(
            org_id,
            time_after,
            time_before,
            now=self.now(),
            user_ids=None if user_ids is None else list(user_ids),
            service_user_ids=None if service_user_ids is None else list(service_user_ids),
            playbook_id=playbook_id,
        )

    # -- stats --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset_stats(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, org_id: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._records
                if (org_id is None or r.org_id == org_id) and (status is None or r.status == status)
            )

    def _record(self, org_id: str | None, q: Mapping[str, list[str]], status: int) -> None:
        rec = RequestRecord(
            org_id=org_id,
            time_after=_int_or_none(_one(q, "time_after")),
            time_before=_int_or_none(_one(q, "time_before")),
            user_ids=tuple(q.get("user_ids", ())),
            service_user_ids=tuple(q.get("service_user_ids", ())),
            playbook_id=_one(q, "playbook_id"),
            status=status,
            at=time.time(),
        )
        with self._lock:
            self._records.append(rec)

    def _take_token(self, token: str) -> int | None:
        """None when the request may proceed, else the Retry-After seconds (>= 1)."""
        rate = self.rate_limit
        if rate is None:
            return None
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(token, (self.burst, now))
            level = min(self.burst, level + (now - last) * rate)
            if level >= 1.0:
                self._buckets[token] = (level - 1.0, now)
                return None
            self._buckets[token] = (level, now)
        return max(1, math.ceil((1.0 - level) / rate))


def serve(host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Run a :class:`Simulator` (built from ``kwargs``) until SIGINT/SIGTERM."""
    sim = Simulator(**kwargs)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        url = sim.start(host, port)
        print(f"simulator listening on {url}", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
