"""Local HTTP simulator of ``GET /v3/organizations/{org_id}/metrics/sessions``.

For tests, the demo and benchmarks only; it never talks to the real API. Stdlib only.

Check order of the metrics endpoint: 401 (missing/unknown bearer token), 404 (unknown org;
built with ``orgs=None`` it knows every org id), 403 (token does not cover the org or lacks
ViewOrgMetrics), 422 (missing or non-integer ``time_after``/``time_before``), 400 (empty
window or longer than ``max_range_days``), 429 (per-token token bucket), take the first
matching injected fault, then the fault's answer or 200 with :meth:`SyntheticData.metrics`
at the simulator clock, sent ``latency`` seconds after the request arrived (the simulated
latency is the server's response time, its own work included; faulted answers get it too; a
``slow`` fault adds its delay). Requests rejected before the fault stage do not consume
faults.

Admin endpoints (no auth, meant for loopback): ``POST/DELETE /_sim/faults``,
``GET/DELETE /_sim/stats``, ``POST /_sim/clock`` (``{"now": t}`` freezes the clock,
``{"offset": s}`` runs real time shifted by ``s``), ``GET /_sim/truth?org_id=...``.

Layout: :mod:`collector.sim.server` holds :class:`Simulator` (its state, and the small
public surface its HTTP handler uses), :func:`serve` and the records;
:mod:`collector.sim.api` routes requests and answers the metrics endpoint,
:mod:`collector.sim.admin` the admin endpoints, :mod:`collector.sim.http` the HTTP plumbing,
:mod:`collector.sim.faults` the faults and :mod:`collector.sim.data` the synthetic data.
"""

from __future__ import annotations

from collector.sim.data import SyntheticData
from collector.sim.faults import Fault
from collector.sim.server import DEFAULT_TOKEN, RequestRecord, Simulator, TokenGrant, serve

__all__ = [
    "DEFAULT_TOKEN",
    "Fault",
    "RequestRecord",
    "Simulator",
    "SyntheticData",
    "TokenGrant",
    "serve",
]
