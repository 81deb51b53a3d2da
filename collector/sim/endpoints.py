"""Routes and query validation of the local API simulator's endpoints (:mod:`collector.sim`).

:func:`parse_route` maps a path to a :class:`Route` (its endpoint kind and org);
:func:`prepare` validates a route's query and returns the 422 errors, the 400 reason, or how
to compute the body through the simulator's public methods. Stdlib only.

Query rules: ``time_after``/``time_before`` are required integers everywhere except on
``consumption/daily`` (optional there: see :func:`collector.sim.family.consumption_window`);
every time window must be non-empty (the consumption one once its defaults are resolved)
and, for the endpoints answering one aggregate per window, at most ``max_range_days`` long
(400). ``min_sessions``/``min_searches``
(``dau|wau|mau|active-users``): integers >= 0, default 1. ``first`` (organizations):
integer 1..200, default 100; ``after``: an ``end_cursor`` (422 when malformed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collector.sim.family import consumption_window
from collector.sim.http import int_or_none, one, segment_filters
from collector.sim.records import decode_cursor

if TYPE_CHECKING:
    from collector.sim.server import Simulator

__all__ = ["ORG_PREFIX", "Prepared", "Route", "parse_route", "prepare"]

ORG_PREFIX = "/v3/organizations/"
ORGANIZATIONS_PATH = "/v3/enterprise/organizations"
SELF_PATH = "/v3/self"
#: ``/v3/organizations/{org_id}/metrics/{name}``: name -> endpoint kind.
METRICS_NAMES: Mapping[str, str] = {
    "sessions": "sessions",
    "prs": "prs",
    "searches": "searches",
    "dau": "active_users",
    "wau": "active_users",
    "mau": "active_users",
    "active-users": "active_users",
}
_PERIODS: Mapping[str, str] = {"dau": "day", "wau": "week", "mau": "month"}

Query = Mapping[str, list[str]]


@dataclass(frozen=True)
class Route:
    """A known API path: its endpoint ``kind``, its org (None for endpoints of no org) and
    the last path segment (``dau``, ``active-users``, ``daily``...)."""

    kind: str
    org_id: str | None = None
    name: str | None = None


def parse_route(path: str) -> Route | None:
    """The route of ``path``; None when no endpoint has it."""
    if path == SELF_PATH:
        return Route("self")
    if path == ORGANIZATIONS_PATH:
        return Route("organizations")
    if not path.startswith(ORG_PREFIX):
        return None
    parts = path[len(ORG_PREFIX) :].split("/")
    if len(parts) != 3 or not parts[0]:
        return None
    org_id, group, name = parts
    if group == "metrics" and name in METRICS_NAMES:
        return Route(METRICS_NAMES[name], org_id, name)
    if group == "consumption" and name == "daily":
        return Route("consumption", org_id, name)
    return None


@dataclass
class Prepared:
    """A validated request: 422 ``errors``, else a 400 ``bad`` reason, else ``body``."""

    body: Callable[[], Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    bad: str | None = None


def _int(
    q: Query,
    name: str,
    errors: list[dict[str, Any]],
    *,
    default: int | None = None,
    required: bool = False,
    ge: int | None = None,
    le: int | None = None,
) -> int | None:
    """The integer query parameter ``name``, appending a pydantic-style error when bad."""
    raw = one(q, name)
    loc = ["query", name]
    if raw is None:
        if required:
            errors.append({"type": "missing", "loc": loc, "msg": "Field required", "input": None})
        return default
    value = int_or_none(raw)
    if value is None:
        errors.append(
            {"type": "int_parsing", "loc": loc, "input": raw,
             "msg": "Input should be a valid integer, unable to parse string as an integer"}
        )  # fmt: skip
    elif ge is not None and value < ge:
        errors.append(
            {"type": "greater_than_equal", "loc": loc, "input": raw, "ctx": {"ge": ge},
             "msg": f"Input should be greater than or equal to {ge}"}
        )  # fmt: skip
    elif le is not None and value > le:
        errors.append(
            {"type": "less_than_equal", "loc": loc, "input": raw, "ctx": {"le": le},
             "msg": f"Input should be less than or equal to {le}"}
        )  # fmt: skip
    else:
        return value
    return None


#: The endpoints answering one aggregate per window: the range cap applies to them only (a
#: cap is documented for a sibling endpoint; none for the bucket lists or consumption).
_CAPPED = frozenset({"sessions", "prs", "searches", "active-users"})


def _window_problem(sim: Simulator, after: int, before: int, name: str) -> str | None:
    if after >= before:
        return "time_after must be earlier than time_before"
    if name in _CAPPED and before - after > sim.max_range_days * 86_400:
        return f"time range must not exceed {sim.max_range_days} days"
    return None


def _nothing() -> Any:
    return None


def prepare(sim: Simulator, route: Route, q: Query, token: str) -> Prepared:
    """Validate the query ``q`` of an authorized request to ``route``."""
    errors: list[dict[str, Any]] = []
    if route.kind == "self":
        return Prepared(lambda: sim.identity(token))
    if route.kind == "organizations":
        first = _int(q, "first", errors, default=100, ge=1, le=200)
        raw_after = one(q, "after")
        after_org = None if raw_after is None else decode_cursor(raw_after)
        if raw_after is not None and after_org is None:
            errors.append(
                {"type": "value_error", "loc": ["query", "after"], "input": raw_after,
                 "msg": "Value error, not a cursor of this listing"}
            )  # fmt: skip
        if errors or first is None:
            return Prepared(_nothing, errors)
        return Prepared(lambda: sim.org_page(first, after_org))
    org_id = route.org_id
    assert org_id is not None  # every other route belongs to an org
    required = route.kind != "consumption"
    t_after = _int(q, "time_after", errors, required=required)
    t_before = _int(q, "time_before", errors, required=required)
    min_sessions = min_searches = 1
    if route.kind == "active_users":
        min_sessions = _int(q, "min_sessions", errors, default=1, ge=0) or 0
        min_searches = _int(q, "min_searches", errors, default=1, ge=0) or 0
    if errors:
        return Prepared(_nothing, errors)
    if route.kind == "consumption":
        after, before = consumption_window(t_after, t_before, sim.now())
    else:
        assert t_after is not None  # required, and valid since there are no errors
        assert t_before is not None
        after, before = t_after, t_before
    bad = _window_problem(sim, after, before, route.name or route.kind)
    if bad is not None:
        return Prepared(_nothing, bad=bad)
    body: Callable[[], Any]
    if route.kind == "sessions":
        body = lambda: sim.truth(org_id, after, before, **segment_filters(q))  # noqa: E731
    elif route.kind == "prs":
        body = lambda: sim.truth_prs(org_id, after, before, **segment_filters(q))  # noqa: E731
    elif route.kind == "searches":
        body = lambda: sim.truth_searches(org_id, after, before)  # noqa: E731
    elif route.kind == "consumption":
        body = lambda: sim.truth_consumption(org_id, after, before)  # noqa: E731
    elif (period := _PERIODS.get(route.name or "")) is not None:
        body = lambda: sim.truth_active_users(  # noqa: E731
            org_id, period, after, before, min_sessions, min_searches
        )
    else:
        body = lambda: sim.truth_active_users_window(  # noqa: E731
            org_id, after, before, min_sessions, min_searches
        )
    return Prepared(body)
