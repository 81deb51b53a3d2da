"""Request routing and the metrics endpoint of the local API simulator.

:class:`Handler` dispatches ``/_sim/...`` to :mod:`collector.sim.admin` and answers
``GET /v3/organizations/{org_id}/metrics/sessions`` in the check order documented in
:mod:`collector.sim`, through the simulator's public methods only. Stdlib only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from collector.sim.admin import ADMIN_PREFIX, handle_admin
from collector.sim.faults import fault_status, perform
from collector.sim.http import HandlerBase, int_or_none, one, segment_filters

__all__ = ["METRICS_PREFIX", "METRICS_SUFFIX", "Handler"]

METRICS_PREFIX = "/v3/organizations/"
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
        if path.startswith(METRICS_PREFIX) and path.endswith(METRICS_SUFFIX):
            self.problem(405, f"method {method} not allowed", {"Allow": "GET"})
            sim.record(None, {}, 405)
        else:
            self.problem(404, f"no route for {method} {path}")
            sim.record(None, {}, 404)

    # -- the API endpoint ---------------------------------------------------------------

    def _api(self) -> None:
        sim = self.server.sim
        arrived = time.monotonic()
        split = urlsplit(self.path)
        path = split.path
        q = parse_qs(split.query, keep_blank_values=True)
        org_id: str | None = None
        if path.startswith(METRICS_PREFIX) and path.endswith(METRICS_SUFFIX):
            middle = path[len(METRICS_PREFIX) : -len(METRICS_SUFFIX)]
            if middle and "/" not in middle:
                org_id = middle
        if org_id is None:
            sim.record(None, q, 404)
            self.problem(404, f"no route for GET {path}")
            return

        def fail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
            sim.record(org_id, q, status)
            self.problem(status, detail, headers)

        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        refused = sim.authorize(token if scheme.lower() == "bearer" else None, org_id)
        if refused == 401:
            fail(401, "missing, invalid or expired bearer token")
            return
        if refused == 404:
            fail(404, f"organization {org_id} not found")
            return
        if refused == 403:
            fail(403, f"token lacks the ViewOrgMetrics permission for organization {org_id}")
            return
        errors: list[dict[str, Any]] = []
        bounds: dict[str, int] = {}
        for name in ("time_after", "time_before"):
            raw = one(q, name)
            value = int_or_none(raw)
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
            sim.record(org_id, q, 422)
            self.send_json(422, {"detail": errors})
            return
        after, before = bounds["time_after"], bounds["time_before"]
        if after >= before:
            fail(400, "time_after must be earlier than time_before")
            return
        if before - after > sim.max_range_days * 86_400:
            fail(400, f"time range must not exceed {sim.max_range_days} days")
            return
        wait = sim.take_rate_token(token)
        if wait is not None:
            fail(429, "rate limit exceeded", {"Retry-After": str(wait)})
            return
        fault = sim.next_fault(org_id)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None

        def real_body() -> dict[str, Any]:
            return sim.truth(org_id, after, before, **segment_filters(q))

        if fault is None:
            body = real_body()
            sim.record(org_id, q, 200)
            _answer_after(arrived, sim.latency)
            self.send_json(200, body)
        else:
            sim.record(org_id, q, fault_status(fault))
            _answer_after(arrived, sim.latency)
            perform(fault, self, real_body)


def _answer_after(arrived: float, latency: float) -> None:
    """Hold the answer until `latency` seconds after the request arrived: the simulated
    latency is the server's response time, its own work included."""
    left = arrived + latency - time.monotonic()
    if left > 0:
        time.sleep(left)
