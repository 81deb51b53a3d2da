"""Request routing and the API endpoints of the local API simulator.

:class:`Handler` dispatches ``/_sim/...`` to :mod:`collector.sim.admin` and answers the API
routes (:func:`collector.sim.endpoints.parse_route`) in the check order documented in
:mod:`collector.sim`, through the simulator's public methods only. Stdlib only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from collector.sim.admin import ADMIN_PREFIX, handle_admin
from collector.sim.endpoints import ORG_PREFIX, parse_route, prepare
from collector.sim.faults import fault_status, perform
from collector.sim.http import HandlerBase
from collector.sim.records import PERMISSIONS

__all__ = ["METRICS_PREFIX", "METRICS_SUFFIX", "Handler"]

METRICS_PREFIX = ORG_PREFIX
METRICS_SUFFIX = "/metrics/sessions"


class Handler(HandlerBase):
    # -- verbs --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.read_body()
        path = urlsplit(self.path).path
        if path.startswith(ADMIN_PREFIX):
            handle_admin(self, "GET", path, b"")
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
        body = self.read_body()
        path = urlsplit(self.path).path
        if path.startswith(ADMIN_PREFIX):
            handle_admin(self, method, path, body)
            return
        sim = self.server.sim
        route = parse_route(path)
        # recorded before it is answered, as every request is: a client that reads the
        # stats after its answer finds it there
        if route is not None:
            sim.record(None, {}, 405, route.kind)
            self.problem(405, f"method {method} not allowed", {"Allow": "GET"})
        else:
            sim.record(None, {}, 404, "unknown")
            self.problem(404, f"no route for {method} {path}")

    # -- the API endpoints --------------------------------------------------------------

    def _api(self) -> None:
        sim = self.server.sim
        arrived = time.monotonic()
        split = urlsplit(self.path)
        path = split.path
        q = parse_qs(split.query, keep_blank_values=True)
        route = parse_route(path)
        if route is None:
            sim.record(None, q, 404, "unknown")
            self.problem(404, f"no route for GET {path}")
            return
        org_id, kind = route.org_id, route.kind

        def fail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
            sim.record(org_id, q, status, kind)
            self.problem(status, detail, headers)

        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        refused = sim.authorize(token if scheme.lower() == "bearer" else None, org_id, kind)
        if refused == 401:
            fail(401, "missing, invalid or expired bearer token")
            return
        if refused == 404:
            fail(404, f"organization {org_id} not found")
            return
        if refused == 403:
            where = f" for organization {org_id}" if org_id is not None else ""
            fail(403, f"token lacks the {PERMISSIONS[kind]} permission{where}")
            return
        prepared = prepare(sim, route, q, token)
        if prepared.errors:
            sim.record(org_id, q, 422, kind)
            self.send_json(422, {"detail": prepared.errors})
            return
        if prepared.bad is not None:
            fail(400, prepared.bad)
            return
        wait = sim.take_rate_token(token)
        if wait is not None:
            fail(429, "rate limit exceeded", {"Retry-After": str(wait)})
            return
        fault = sim.next_fault(org_id, kind)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is None:
            body = prepared.body()
            sim.record(org_id, q, 200, kind)
            _answer_after(arrived, sim.latency)
            self.send_json(200, body)
        else:
            sim.record(org_id, q, fault_status(fault), kind)
            _answer_after(arrived, sim.latency)
            perform(fault, self, prepared.body)


def _answer_after(arrived: float, latency: float) -> None:
    """Hold the answer until `latency` seconds after the request arrived: the simulated
    latency is the server's response time, its own work included."""
    left = arrived + latency - time.monotonic()
    if left > 0:
        time.sleep(left)
