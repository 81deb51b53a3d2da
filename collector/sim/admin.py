"""Admin endpoints (``/_sim/...``) of the local API simulator (:mod:`collector.sim`).

No auth, meant for loopback: ``POST/GET/DELETE /_sim/faults``, ``GET/DELETE /_sim/stats``,
``POST /_sim/clock`` (``{"now": t}`` freezes the clock, ``{"offset": s}`` runs real time
shifted by ``s``), ``GET /_sim/truth?org_id=...&time_after=...&time_before=...`` (optional
``endpoint``: ``sessions`` (default), ``prs``, ``searches``, ``dau``, ``wau``, ``mau``,
``active-users`` with ``min_sessions``/``min_searches``, ``consumption`` with optional
bounds), ``GET /_sim/orgs`` (the listed orgs) and ``POST /_sim/orgs``
(``{"orgs": [...], "names": {...}}``, as :meth:`Simulator.set_orgs`).
Admin calls are not recorded in the simulator's stats. Stdlib only.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from collector.sim.faults import Fault
from collector.sim.http import HandlerBase, int_or_none, one, segment_filters

__all__ = ["ADMIN_PREFIX", "handle_admin"]

ADMIN_PREFIX = "/_sim/"


def handle_admin(h: HandlerBase, method: str, path: str, raw: bytes) -> None:
    """Answer the admin request ``method path`` (body ``raw``) through ``h``."""
    sim = h.server.sim
    try:
        payload: Any = json.loads(raw) if raw.strip() else None
    except ValueError:
        h.problem(400, "request body is not JSON")
        return
    route = (method, path.rstrip("/"))
    if route == ("POST", "/_sim/faults"):
        items = payload if isinstance(payload, list) else [payload]
        try:
            faults = [Fault.from_dict(item) for item in items]
        except (TypeError, ValueError) as exc:
            h.problem(400, f"bad fault: {exc}")
            return
        sim.inject(*faults)
        h.send_json(200, {"faults": [f.to_dict() for f in sim.pending_faults]})
    elif route == ("GET", "/_sim/faults"):
        h.send_json(200, {"faults": [f.to_dict() for f in sim.pending_faults]})
    elif route == ("DELETE", "/_sim/faults"):
        sim.clear_faults()
        h.send_json(200, {"faults": []})
    elif route == ("GET", "/_sim/stats"):
        h.send_json(200, {"requests": [r.to_dict() for r in sim.requests]})
    elif route == ("DELETE", "/_sim/stats"):
        sim.reset_stats()
        h.send_json(200, {"requests": []})
    elif route == ("POST", "/_sim/clock"):
        _clock(h, payload)
    elif route == ("GET", "/_sim/truth"):
        _truth(h)
    elif route == ("GET", "/_sim/orgs"):
        h.send_json(200, {"orgs": sim.listed_orgs()})
    elif route == ("POST", "/_sim/orgs"):
        _orgs(h, payload)
    else:
        h.problem(404, f"no admin route for {method} {path}")


def _clock(h: HandlerBase, payload: Any) -> None:
    sim = h.server.sim
    try:
        if isinstance(payload, dict) and payload.get("now") is not None:
            frozen = float(payload["now"])
            sim.set_clock(lambda: frozen)
        elif isinstance(payload, dict) and "offset" in payload:
            offset = float(payload["offset"] or 0.0)
            sim.set_clock(lambda: time.time() + offset)
        else:
            h.problem(400, 'expected {"now": epoch_seconds} or {"offset": seconds}')
            return
    except (TypeError, ValueError):
        h.problem(400, "clock values must be numbers")
        return
    h.send_json(200, {"now": sim.now()})


def _orgs(h: HandlerBase, payload: Any) -> None:
    orgs = payload.get("orgs") if isinstance(payload, dict) else None
    names = payload.get("names") if isinstance(payload, dict) else None
    if (
        not isinstance(orgs, list)
        or not all(isinstance(o, str) for o in orgs)
        or not (names is None or isinstance(names, dict))
    ):
        h.problem(400, 'expected {"orgs": [org ids], "names": {org id: name} (optional)}')
        return
    h.server.sim.set_orgs(orgs, {str(k): str(v) for k, v in (names or {}).items()})
    h.send_json(200, {"orgs": h.server.sim.listed_orgs()})


_TRUTH_PERIODS = {"dau": "day", "wau": "week", "mau": "month"}


def _truth(h: HandlerBase) -> None:
    sim = h.server.sim
    q = parse_qs(urlsplit(h.path).query)
    org_id = one(q, "org_id")
    endpoint = one(q, "endpoint") or "sessions"
    after = int_or_none(one(q, "time_after"))
    before = int_or_none(one(q, "time_before"))
    if org_id is not None and endpoint == "consumption":
        h.send_json(200, sim.truth_consumption(org_id, after, before))
        return
    if org_id is None or after is None or before is None:
        h.problem(400, "org_id, time_after and time_before (integers) are required")
        return
    min_sessions = int_or_none(one(q, "min_sessions"))
    min_searches = int_or_none(one(q, "min_searches"))
    thresholds = (1 if min_sessions is None else min_sessions,
                  1 if min_searches is None else min_searches)  # fmt: skip
    body: Any
    if endpoint == "sessions":
        body = sim.truth(org_id, after, before, **segment_filters(q))
    elif endpoint == "prs":
        body = sim.truth_prs(org_id, after, before, **segment_filters(q))
    elif endpoint == "searches":
        body = sim.truth_searches(org_id, after, before)
    elif endpoint in _TRUTH_PERIODS:
        body = sim.truth_active_users(org_id, _TRUTH_PERIODS[endpoint], after, before, *thresholds)
    elif endpoint == "active-users":
        body = sim.truth_active_users_window(org_id, after, before, *thresholds)
    else:
        h.problem(400, f"unknown endpoint {endpoint!r}")
        return
    h.send_json(200, body)
