"""What the local API simulator (:mod:`collector.sim`) keeps: token grants, request records,
its organizations, and the endpoint kinds they refer to. Stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "DENIABLE",
    "ENDPOINTS",
    "METRICS_ENDPOINTS",
    "PERMISSIONS",
    "OrgDirectory",
    "RequestRecord",
    "TokenGrant",
]

#: Endpoint kinds a :class:`TokenGrant` can be denied.
DENIABLE: tuple[str, ...] = (
    "sessions",
    "prs",
    "searches",
    "active_users",
    "consumption",
    "organizations",
)
#: Every endpoint kind a :class:`RequestRecord` names (``unknown``: no route).
ENDPOINTS: tuple[str, ...] = (*DENIABLE, "self", "unknown")
#: The kinds governed by ViewOrgMetrics (and so by ``TokenGrant.can_view_metrics``).
METRICS_ENDPOINTS: frozenset[str] = frozenset({"sessions", "prs", "searches", "active_users"})
#: The permission a 403 names, by endpoint kind.
PERMISSIONS: Mapping[str, str] = {
    **dict.fromkeys(METRICS_ENDPOINTS, "ViewOrgMetrics"),
    "consumption": "ManageBilling / ViewOrgConsumption",
    "organizations": "ManageOrganizations",
}


@dataclass
class TokenGrant:
    """What a bearer token may see: ``orgs=None`` means every org.

    ``can_view_metrics=False`` refuses every metrics endpoint (ViewOrgMetrics); ``denied``
    names further endpoint kinds (:data:`DENIABLE`) the token lacks the permission for.
    ``service_user_id``/``service_user_name`` are what ``/v3/self`` reports (derived from a
    hash of the token when None; never the token itself).
    """

    orgs: frozenset[str] | None
    can_view_metrics: bool = True
    denied: frozenset[str] = frozenset()
    service_user_id: str | None = None
    service_user_name: str | None = None

    def __post_init__(self) -> None:
        self.denied = frozenset(self.denied)
        unknown = self.denied - set(DENIABLE)
        if unknown:
            raise ValueError(f"unknown endpoint kinds {sorted(unknown)}; one of {DENIABLE}")

    def covers(self, org_id: str) -> bool:
        """Whether the token may read ``org_id``'s metrics."""
        return self.can_view_metrics and (self.orgs is None or org_id in self.orgs)

    def permits(self, endpoint: str, org_id: str | None = None) -> bool:
        """Whether the token may call an ``endpoint`` (kind) of ``org_id`` (None: an
        endpoint of no org)."""
        if endpoint in self.denied:
            return False
        if endpoint in METRICS_ENDPOINTS and not self.can_view_metrics:
            return False
        return org_id is None or self.orgs is None or org_id in self.orgs

    def identity(self, token: str) -> dict[str, Any]:
        """The ``/v3/self`` body of a service user holding this grant as ``token``."""
        digest = hashlib.sha256(token.encode()).hexdigest()[:12]
        org = next(iter(self.orgs)) if self.orgs is not None and len(self.orgs) == 1 else None
        return {
            "principal_type": "service_user",
            "service_user_id": self.service_user_id or f"service-user-{digest}",
            "service_user_name": self.service_user_name or f"Simulator service user {digest[:6]}",
            "org_id": org,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One API request seen by the simulator (admin calls are not recorded).

    ``status`` is the HTTP status sent; 0 for ``reset``/``truncate`` faults. ``at`` is the
    real wall-clock time (``time.time()``) the request arrived, not the simulator clock.
    ``org_id`` is None for unknown paths and endpoints of no org; the time bounds are None
    when not integers. ``endpoint`` is the endpoint kind (:data:`ENDPOINTS`).
    """

    org_id: str | None
    time_after: int | None
    time_before: int | None
    user_ids: tuple[str, ...]
    service_user_ids: tuple[str, ...]
    playbook_id: str | None
    status: int
    at: float
    endpoint: str = "sessions"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["user_ids"] = list(self.user_ids)
        d["service_user_ids"] = list(self.service_user_ids)
        return d


_EPOCH_2024 = 1_704_067_200


@dataclass(frozen=True)
class _Org:
    name: str
    created_at: int
    updated_at: int


@dataclass
class OrgDirectory:
    """The simulator's organizations: which ids it knows (None: every id) and which it lists.

    Orgs given at construction get a ``created_at`` drawn from ``seed`` (in 2022-2023) and
    ``updated_at`` up to 90 days later; orgs added later by :meth:`set` are created, and
    renamed orgs updated, at ``clock()``. With ``known=None`` the listed orgs are those
    named in ``names``.
    """

    known: frozenset[str] | None
    seed: int
    clock: Callable[[], int]
    names: Mapping[str, str] | None = None
    _orgs: dict[str, _Org] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        names = dict(self.names or {})
        listed = set(names) if self.known is None else self.known
        for org_id in listed:
            rng = random.Random(f"{self.seed}:{org_id}:created")
            created = _EPOCH_2024 - int(rng.random() * 730 * 86_400)
            updated = created + int(rng.random() * 90 * 86_400)
            self._orgs[org_id] = _Org(names.get(org_id, f"Org {org_id}"), created, updated)

    def knows(self, org_id: str) -> bool:
        known = self.known
        return known is None or org_id in known

    def set(self, orgs: Iterable[str], names: Mapping[str, str] | None = None) -> None:
        """Know (and list) exactly ``orgs`` from now on; ``names`` renames some of them."""
        ids = frozenset(orgs)
        names = names or {}
        now = self.clock()
        with self._lock:
            kept: dict[str, _Org] = {}
            for org_id in ids:
                old = self._orgs.get(org_id)
                name = names.get(org_id, old.name if old else f"Org {org_id}")
                if old is None:
                    kept[org_id] = _Org(name, now, now)
                elif name != old.name:
                    kept[org_id] = _Org(name, old.created_at, now)
                else:
                    kept[org_id] = old
            self._orgs = kept
            self.known = ids

    def listed(self) -> list[dict[str, Any]]:
        """The listed orgs as ``OrganizationResponse`` items, sorted by ``org_id``."""
        with self._lock:
            orgs = sorted(self._orgs.items())
        return [
            {
                "org_id": org_id,
                "name": o.name,
                "created_at": o.created_at,
                "updated_at": o.updated_at,
                "max_cycle_acu_limit": None,
                "max_session_acu_limit": None,
            }
            for org_id, o in orgs
        ]

    def page(self, first: int, after: str | None) -> dict[str, Any]:
        """One page of :meth:`listed` after the org ``after`` (a decoded cursor)."""
        items = self.listed()
        rest = [o for o in items if after is None or o["org_id"] > after]
        page, more = rest[:first], len(rest) > first
        return {
            "items": page,
            "end_cursor": encode_cursor(page[-1]["org_id"]) if more else None,
            "has_next_page": more,
            "total": len(items),
        }


def encode_cursor(org_id: str) -> str:
    """The opaque cursor pointing after ``org_id``."""
    return base64.urlsafe_b64encode(f"org:{org_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The org id an :func:`encode_cursor` cursor points after; None when malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return raw.removeprefix("org:") if raw.startswith("org:") else None
