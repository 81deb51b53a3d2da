"""Local HTTP simulator of Devin's API v3 metrics family.

For tests, the demo and benchmarks only; it never talks to the real API. Stdlib only.

Endpoints (GET only): ``/v3/organizations/{org_id}/metrics/sessions``, ``.../metrics/prs``,
``.../metrics/searches``, ``.../metrics/dau``, ``/wau``, ``/mau``, ``/active-users``,
``/v3/organizations/{org_id}/consumption/daily``, ``/v3/enterprise/organizations`` and
``/v3/self``. Every answer is computed from the same deterministic synthetic sessions
(:mod:`collector.sim.data`; the aggregates beyond sessions and their rules, e.g. whole
buckets, billing days, defaults, are in :mod:`collector.sim.family`).

Check order of an org endpoint: 401 (missing/unknown bearer token), 404 (unknown org;
built with ``orgs=None`` it knows every org id; ``Simulator.set_orgs`` changes the set
while running), 403 (token does not cover the org, or lacks the endpoint's permission:
``can_view_metrics=False`` refuses every metrics endpoint (ViewOrgMetrics), ``denied``
names endpoint kinds: ``sessions``, ``prs``, ``searches``, ``active_users``,
``consumption`` (ManageBilling / ViewOrgConsumption), ``organizations``
(ManageOrganizations)), 422 (missing or non-integer time bounds, bad ``min_sessions``/
``min_searches``), 400 (empty window, or longer than ``max_range_days`` for the endpoints
answering one aggregate per window; bucket lists and consumption have no cap), 429 (per-token
token bucket), take the first matching injected fault, then the fault's answer or 200 with
the body at the simulator clock, sent ``latency`` seconds after the request arrived (the
simulated latency is the server's response time, its own work included; faulted answers get
it too; a ``slow`` fault adds its delay). Requests rejected before the fault stage do not
consume faults. A fault applies to every endpoint of its org (or of every org) unless its
``endpoint`` names one kind. ``/v3/enterprise/organizations`` (cursor pagination over the
listed orgs, sorted by id; ``first`` 1..200, default 100) checks 401, 403, 422, 429, then
the faults naming ``endpoint="organizations"``; ``/v3/self`` checks 401, 429, then the
faults naming ``endpoint="self"``, and answers a ``service_user`` identity whose ``org_id``
is the grant's single org (null for a grant of several or all orgs); never the token.
Every API request is recorded with its endpoint kind (``unknown`` without a route).

Admin endpoints (no auth, meant for loopback): ``POST/DELETE /_sim/faults``,
``GET/DELETE /_sim/stats``, ``POST /_sim/clock`` (``{"now": t}`` freezes the clock,
``{"offset": s}`` runs real time shifted by ``s``), ``GET /_sim/truth?org_id=...``
(``endpoint=...`` for the other endpoints), ``GET/POST /_sim/orgs``.

Layout: :mod:`collector.sim.server` holds :class:`Simulator` (its state, and the small
public surface its HTTP handler uses), :mod:`collector.sim.launch` :func:`serve`,
:mod:`collector.sim.records` the grants, request records and org directory;
:mod:`collector.sim.api` routes requests and answers the API endpoints (their routes and
validation in :mod:`collector.sim.endpoints`), :mod:`collector.sim.admin` the admin
endpoints, :mod:`collector.sim.http` the HTTP plumbing, :mod:`collector.sim.faults` the
faults, :mod:`collector.sim.data` the synthetic data and :mod:`collector.sim.family` the
aggregates of the metrics family.
"""

from __future__ import annotations

from collector.sim.data import SyntheticData
from collector.sim.faults import Fault
from collector.sim.launch import serve
from collector.sim.records import RequestRecord, TokenGrant
from collector.sim.server import DEFAULT_TOKEN, Simulator

__all__ = [
    "DEFAULT_TOKEN",
    "Fault",
    "RequestRecord",
    "Simulator",
    "SyntheticData",
    "TokenGrant",
    "serve",
]
