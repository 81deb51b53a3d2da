"""The simulated API server: :class:`Simulator`, :func:`serve` and the records they keep.

The behaviour (check order, faults, admin endpoints) is described in :mod:`collector.sim`.
The HTTP handler (:mod:`collector.sim.api`, :mod:`collector.sim.admin`) reads and changes the
simulator only through its public methods: :meth:`Simulator.authorize`,
:meth:`Simulator.knows`, :meth:`Simulator.take_rate_token`, :meth:`Simulator.next_fault`,
:meth:`Simulator.record`, :meth:`Simulator.truth` and the fault, stats and clock methods.
Stdlib only.
"""

from __future__ import annotations

import errno
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from collector.errors import ConfigError
from collector.sim.api import Handler
from collector.sim.data import SyntheticData
from collector.sim.faults import Fault, FaultQueue
from collector.sim.http import SimServer, int_or_none, one

__all__ = [
    "DEFAULT_ORGS",
    "DEFAULT_TOKEN",
    "RequestRecord",
    "Simulator",
    "TokenGrant",
    "serve",
]

DEFAULT_ORGS: tuple[str, ...] = ("org-alpha", "org-beta")
DEFAULT_TOKEN = "cog_sim_token"  # noqa: S105 - the simulator's well-known test token


@dataclass
class TokenGrant:
    """What a bearer token may see: ``orgs=None`` means every org."""

    orgs: frozenset[str] | None
    can_view_metrics: bool = True

    def covers(self, org_id: str) -> bool:
        """Whether the token may read ``org_id``'s metrics."""
        return self.can_view_metrics and (self.orgs is None or org_id in self.orgs)


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


class Simulator:
    """The simulated API server; see :mod:`collector.sim` for its behaviour."""

    def __init__(
        self,
        *,
        data: SyntheticData | None = None,
        orgs: Iterable[str] | None = DEFAULT_ORGS,
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
        self._orgs = None if orgs is None else frozenset(orgs)
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
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = SimServer((host, port), self, Handler)
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
    def orgs(self) -> frozenset[str] | None:
        """The org ids the simulator knows; None means it knows every org id."""
        return self._orgs

    def knows(self, org_id: str) -> bool:
        return self._orgs is None or org_id in self._orgs

    @property
    def tokens(self) -> tuple[str, ...]:
        """The bearer tokens the simulator accepts, sorted."""
        return tuple(sorted(self._tokens))

    def authorize(self, token: str | None, org_id: str) -> int | None:
        """None when ``token`` may read ``org_id``'s metrics, else the status refusing it.

        401 for a missing or unknown token, 404 for an org the simulator does not know,
        403 for a token that does not cover the org or lacks ViewOrgMetrics; in that order.
        """
        grant = self._tokens.get(token) if token else None
        if grant is None:
            return 401
        if not self.knows(org_id):
            return 404
        if not grant.covers(org_id):
            return 403
        return None

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

    @property
    def pending_faults(self) -> list[Fault]:
        """The injected faults not used up yet, in the order they apply."""
        return self._faults.pending()

    def next_fault(self, org_id: str) -> Fault | None:
        """Consume one use of the first pending fault matching ``org_id``, if any."""
        return self._faults.take(org_id)

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

    def record(self, org_id: str | None, q: Mapping[str, list[str]], status: int) -> None:
        """Add an API request (its ``parse_qs`` query ``q``) answered with ``status``."""
        rec = RequestRecord(
            org_id=org_id,
            time_after=int_or_none(one(q, "time_after")),
            time_before=int_or_none(one(q, "time_before")),
            user_ids=tuple(q.get("user_ids", ())),
            service_user_ids=tuple(q.get("service_user_ids", ())),
            playbook_id=one(q, "playbook_id"),
            status=status,
            at=time.time(),
        )
        with self._lock:
            self._records.append(rec)

    def take_rate_token(self, token: str) -> int | None:
        """Take one request from ``token``'s bucket: None when the request may proceed,
        else the Retry-After seconds (>= 1)."""
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


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    token_envs: Sequence[str] = ("DEVIN_API_TOKEN",),
    orgs_from: str | None = None,
    **kwargs: Any,
) -> None:
    """Run a :class:`Simulator` (built from ``kwargs``) until SIGINT/SIGTERM.

    The first line printed is ``simulator listening on URL``; the next ones say which orgs
    it serves (``orgs_from`` names where they came from), which token it accepts and how to
    point the collector at it (``token_envs``: the variables the configuration reads).
    A port that cannot be bound raises `ConfigError` naming it.
    """
    sim = Simulator(**kwargs)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        url = sim.start(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = "the port is already in use (another simulator, or another program?)"
        else:
            problem = exc.strerror or str(exc)
        raise ConfigError(
            f"the simulator cannot listen on {host}:{port}: {problem}. "
            "Pick another --port (0 picks a free one) or --host"
        ) from None
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        print(f"simulator listening on {url}", flush=True)
        print(_banner(sim, url, token_envs, orgs_from), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(sim: Simulator, url: str, token_envs: Sequence[str], orgs_from: str | None) -> str:
    """What the simulator serves and how to point the collector at it, for people."""
    parts = urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::"):  # noqa: S104 - naming it, not binding it
        url = f"http://127.0.0.1:{parts.port}"
    if sim.orgs is None:
        orgs = "any org id"
    else:
        orgs = ", ".join(sorted(sim.orgs)) + (f" (from {orgs_from})" if orgs_from else "")
    tokens = sim.tokens
    lines = [
        f"  serves orgs: {orgs}",
        f"  accepts token: {', '.join(tokens) if tokens else '(none)'}",
        "To collect from it, set in the configuration's [api] section:",
        f'  base_url = "{url}"',
    ]
    if tokens:
        lines.append("and in the shell that runs the collector:")
        lines += [f"  export {name}={tokens[0]}" for name in dict.fromkeys(token_envs)]
    lines.append("Synthetic data only, never the real API. Ctrl-C stops it.")
    return "\n".join(lines)
