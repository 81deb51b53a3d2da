"""The simulated API server: :class:`Simulator` (:func:`~collector.sim.launch.serve` runs
one from the command line; the records it keeps are in :mod:`collector.sim.records`).

The behaviour (check order, faults, admin endpoints) is described in :mod:`collector.sim`.
The HTTP handler (:mod:`collector.sim.api`, :mod:`collector.sim.endpoints`,
:mod:`collector.sim.admin`) reads and changes the simulator only through its public methods:
:meth:`Simulator.authorize`, :meth:`Simulator.knows`, :meth:`Simulator.take_rate_token`,
:meth:`Simulator.next_fault`, :meth:`Simulator.record`, the ``truth*`` accessors,
:meth:`Simulator.identity`, :meth:`Simulator.org_page` and the org, fault, stats and clock
methods. Stdlib only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from collector.sim import family
from collector.sim.api import Handler
from collector.sim.data import SyntheticData
from collector.sim.faults import Fault, FaultQueue
from collector.sim.http import SimServer, int_or_none, one
from collector.sim.records import OrgDirectory, RequestRecord, TokenGrant

__all__ = [
    "DEFAULT_ORGS",
    "DEFAULT_TOKEN",
    "RequestRecord",
    "Simulator",
    "TokenGrant",
]

DEFAULT_ORGS: tuple[str, ...] = ("org-alpha", "org-beta")
DEFAULT_TOKEN = "cog_sim_token"  # noqa: S105 - the simulator's well-known test token


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
        org_names: Mapping[str, str] | None = None,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("rate_limit must be positive")
        self._data = data if data is not None else SyntheticData(seed=0)
        self._orgs = OrgDirectory(
            known=None if orgs is None else frozenset(orgs),
            seed=self._data.seed,
            clock=self.now,
            names=org_names,
        )
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
        return self._orgs.known

    def knows(self, org_id: str) -> bool:
        return self._orgs.knows(org_id)

    def set_orgs(self, orgs: Iterable[str], names: Mapping[str, str] | None = None) -> None:
        """Know (and list) exactly ``orgs`` from now on: a removed org answers 404 and is no
        longer listed. ``names`` (re)names some of them (default name ``Org {org_id}``);
        an added org is created, a renamed one updated, at the simulator clock."""
        self._orgs.set(orgs, names)

    def listed_orgs(self) -> list[dict[str, Any]]:
        """Every org ``GET /v3/enterprise/organizations`` lists, sorted by ``org_id``: the
        known orgs, or with ``orgs=None`` the ones named in ``org_names``."""
        return self._orgs.listed()

    def org_page(self, first: int, after: str | None) -> dict[str, Any]:
        """The ``/v3/enterprise/organizations`` page of ``first`` orgs after the org id
        ``after`` (a decoded cursor; None for the first page)."""
        return self._orgs.page(first, after)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The bearer tokens the simulator accepts, sorted."""
        return tuple(sorted(self._tokens))

    def add_token(self, token: str, grant: TokenGrant) -> None:
        """Accept `token` from now on, with what `grant` lets it see."""
        with self._lock:
            self._tokens[token] = grant

    def authorize(
        self, token: str | None, org_id: str | None, endpoint: str = "sessions"
    ) -> int | None:
        """None when ``token`` may call ``endpoint`` (kind) of ``org_id`` (None: an endpoint
        of no org), else the status refusing it.

        401 for a missing or unknown token, 404 for an org the simulator does not know,
        403 for a token that does not cover the org or lacks the endpoint's permission
        (``can_view_metrics``, ``denied``); in that order.
        """
        grant = self._tokens.get(token) if token else None
        if grant is None:
            return 401
        if org_id is not None and not self.knows(org_id):
            return 404
        if not grant.permits(endpoint, org_id):
            return 403
        return None

    def identity(self, token: str | None) -> dict[str, Any] | None:
        """The ``/v3/self`` body for ``token``; None for a missing or unknown token."""
        grant = self._tokens.get(token) if token else None
        return None if grant is None or token is None else grant.identity(token)

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

    def next_fault(self, org_id: str | None, endpoint: str | None = None) -> Fault | None:
        """Consume one use of the first pending fault matching ``org_id`` (and ``endpoint``,
        a kind, when given), if any."""
        return self._faults.take(org_id, endpoint)

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

    def truth_prs(
        self,
        org_id: str,
        time_after: int,
        time_before: int,
        user_ids: Iterable[str] | None = None,
        service_user_ids: Iterable[str] | None = None,
        playbook_id: str | None = None,
    ) -> dict[str, Any]:
        """What ``metrics/prs`` answers right now (ignoring faults) for these arguments."""
        return family.pr_metrics(
            self._data,
            org_id,
            time_after,
            time_before,
            now=self.now(),
            user_ids=None if user_ids is None else list(user_ids),
            service_user_ids=None if service_user_ids is None else list(service_user_ids),
            playbook_id=playbook_id,
        )

    def truth_searches(self, org_id: str, time_after: int, time_before: int) -> dict[str, Any]:
        """What ``metrics/searches`` answers right now (ignoring faults)."""
        return family.search_metrics(self._data, org_id, time_after, time_before, self.now())

    def truth_active_users(
        self,
        org_id: str,
        period: str,
        time_after: int,
        time_before: int,
        min_sessions: int = 1,
        min_searches: int = 1,
    ) -> list[dict[str, Any]]:
        """What ``metrics/dau`` (``period="day"``), ``/wau`` (``"week"``) or ``/mau``
        (``"month"``) answers right now (ignoring faults)."""
        return family.active_users(
            self._data, org_id, period, time_after, time_before, self.now(),
            min_sessions, min_searches,
        )  # fmt: skip

    def truth_active_users_window(
        self,
        org_id: str,
        time_after: int,
        time_before: int,
        min_sessions: int = 1,
        min_searches: int = 1,
    ) -> dict[str, Any]:
        """What ``metrics/active-users`` answers right now (ignoring faults)."""
        return family.active_users_window(
            self._data, org_id, time_after, time_before, self.now(), min_sessions, min_searches
        )

    def truth_consumption(
        self, org_id: str, time_after: int | None, time_before: int | None
    ) -> dict[str, Any]:
        """What ``consumption/daily`` answers right now (ignoring faults); a None bound
        takes the endpoint's default (:func:`collector.sim.family.consumption_window`)."""
        now = self.now()
        after, before = family.consumption_window(time_after, time_before, now)
        return family.consumption(self._data, org_id, after, before, now)

    # -- stats --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset_stats(self) -> None:
        with self._lock:
            self._records.clear()

    def count(
        self, org_id: str | None = None, status: int | None = None, endpoint: str | None = None
    ) -> int:
        """The recorded requests matching every given filter (``endpoint``: a kind)."""
        with self._lock:
            return sum(
                1
                for r in self._records
                if (org_id is None or r.org_id == org_id)
                and (status is None or r.status == status)
                and (endpoint is None or r.endpoint == endpoint)
            )

    def record(
        self,
        org_id: str | None,
        q: Mapping[str, list[str]],
        status: int,
        endpoint: str = "sessions",
    ) -> None:
        """Add an API request of ``endpoint`` (kind; its ``parse_qs`` query ``q``) answered
        with ``status``."""
        rec = RequestRecord(
            org_id=org_id,
            time_after=int_or_none(one(q, "time_after")),
            time_before=int_or_none(one(q, "time_before")),
            user_ids=tuple(q.get("user_ids", ())),
            service_user_ids=tuple(q.get("service_user_ids", ())),
            playbook_id=one(q, "playbook_id"),
            status=status,
            at=time.time(),
            endpoint=endpoint,
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


def __getattr__(name: str) -> Any:
    """``collector.sim.server.serve`` still works; it lives in :mod:`collector.sim.launch`."""
    if name == "serve":
        from collector.sim.launch import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
