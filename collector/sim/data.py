"""Deterministic synthetic Devin sessions, their PRs and searches, and the session-metrics
aggregate built from them.

Pure: no I/O, stdlib only. Used by the local simulator (:mod:`collector.sim`), tests, the
demo and benchmarks; never by the code that talks to the real API. The other aggregates of
the metrics family (PRs, searches, active users, consumption) are in :mod:`collector.sim.family`.

Sessions are generated per UTC hour bucket from ``random.Random(f"{seed}:{org_id}:{hour}")``
so any window of any length sees exactly the same sessions, and ``metrics()`` aggregates
individual sessions, which makes answers for adjacent windows add up exactly (except
``avg_acus_per_session``, an average, which adds up once weighted by the count).

PRs (:meth:`SyntheticData.prs`) are derived from the sessions without touching their draws:
the ``i``-th session of an hour bucket draws from
``random.Random(f"{seed}:{org_id}:{created_at}:{i}:pr")``. Every session with ``merged_at``
has a PR; of the others 75 % opened one, half of which get closed unmerged (``closed_at``,
a third 1..6 days later, the rest 10 minutes .. 30 hours later); the rest stay open.
Searches (:meth:`SyntheticData.searches`) are an independent stream per org and hour
(``f"{seed}:{org_id}:{hour}:searches"``), 0.8 per session on average, by the same users.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HIDDEN_ORIGINS",
    "LEGACY_ORIGINS",
    "PUBLIC_ORIGINS",
    "SIZES",
    "SimPr",
    "SimSearch",
    "SimSession",
    "SyntheticData",
]

HOUR = 3600
DAY = 86_400

#: Origins the v3 API exposes in ``sessions_created_by_origin`` (each defaults to 0).
PUBLIC_ORIGINS: tuple[str, ...] = (
    "api",
    "automation",
    "code_scan",
    "desktop",
    "jira",
    "linear",
    "slack",
    "teams",
    "webapp",
)
#: Legacy origins: counted in ``sessions_created_count`` but not exposed by origin.
HIDDEN_ORIGINS: tuple[str, ...] = ("cli", "vscode_extension", "devin_spaces")
#: Every non-public origin the generator produces; ``scheduled`` folds into ``automation``.
LEGACY_ORIGINS: tuple[str, ...] = (*HIDDEN_ORIGINS, "scheduled")
SIZES: tuple[str, ...] = ("xs", "s", "m", "l", "xl")

_ORIGIN_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("api", 10.0),
    ("automation", 8.0),
    ("code_scan", 4.0),
    ("desktop", 6.0),
    ("jira", 6.0),
    ("linear", 5.0),
    ("slack", 20.0),
    ("teams", 4.0),
    ("webapp", 28.0),
    ("scheduled", 3.0),
    ("cli", 2.5),
    ("vscode_extension", 1.5),
    ("devin_spaces", 1.0),
)
_ORIGIN_CUM: tuple[float, ...] = tuple(
    sum(w for _, w in _ORIGIN_WEIGHTS[: i + 1]) for i in range(len(_ORIGIN_WEIGHTS))
)
_SIZE_WEIGHTS: tuple[float, ...] = (25.0, 30.0, 24.0, 14.0, 7.0)
_SIZE_CUM: tuple[float, ...] = tuple(sum(_SIZE_WEIGHTS[: i + 1]) for i in range(len(_SIZE_WEIGHTS)))
#: (low, high) ACUs per size.
_SIZE_ACUS: tuple[tuple[float, float], ...] = (
    (0.1, 1.0),
    (0.5, 3.0),
    (2.0, 8.0),
    (6.0, 20.0),
    (15.0, 60.0),
)
#: Relative activity by UTC hour of day (0 means a quiet hour with no sessions at all).
_DIURNAL: tuple[float, ...] = (
    0.15, 0.1, 0.0, 0.0, 0.1, 0.2, 0.4, 0.7, 1.1, 1.5, 1.7, 1.6,
    1.3, 1.5, 1.8, 1.9, 1.7, 1.4, 1.0, 0.7, 0.5, 0.35, 0.25, 0.2,
)  # fmt: skip
_EXTRA_ORIGIN_SHARE = 0.05
#: Share of the sessions without a merged PR that opened one anyway.
_UNMERGED_PR_SHARE = 0.75
#: Share of those unmerged PRs that get closed (the rest stay open).
_CLOSED_PR_SHARE = 0.5
#: Searches per session, on average (same diurnal and weekly rhythm, own draws).
_SEARCHES_PER_SESSION = 0.8


def _pick(cum: tuple[float, ...], u: float) -> int:
    """Index of the weighted choice for ``u`` in [0, 1) over cumulative weights ``cum``."""
    target = u * cum[-1]
    for i, c in enumerate(cum):
        if target < c:
            return i
    return len(cum) - 1


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass(frozen=True, slots=True)
class SimSession:
    created_at: int
    user_id: str
    service_user_id: str | None
    playbook_id: str | None
    used_search: bool
    origin: str
    size: str
    acus: float
    merged_at: int | None


@dataclass(frozen=True, slots=True)
class SimPr:
    """The PR a session opened; it counts in the windows of the session's ``created_at``."""

    created_at: int
    user_id: str
    service_user_id: str | None
    playbook_id: str | None
    merged_at: int | None
    closed_at: int | None

    def state(self, now: int) -> str:
        """``"merged"``, ``"closed"`` (unmerged) or ``"open"`` as of ``now``."""
        if self.merged_at is not None and self.merged_at <= now:
            return "merged"
        if self.closed_at is not None and self.closed_at <= now:
            return "closed"
        return "open"


@dataclass(frozen=True, slots=True)
class SimSearch:
    created_at: int
    user_id: str


class SyntheticData:
    """Deterministic per-org stream of synthetic sessions."""

    def __init__(
        self,
        seed: int = 0,
        sessions_per_hour: float = 6.0,
        users_per_org: int = 8,
        extra_origins: tuple[str, ...] = (),
    ) -> None:
        if sessions_per_hour < 0:
            raise ValueError("sessions_per_hour must be >= 0")
        if users_per_org < 1:
            raise ValueError("users_per_org must be >= 1")
        clash = set(extra_origins) & (set(PUBLIC_ORIGINS) | set(LEGACY_ORIGINS))
        if clash:
            raise ValueError(f"extra_origins clash with known origins: {sorted(clash)}")
        self.seed = seed
        self.sessions_per_hour = sessions_per_hour
        self.users_per_org = users_per_org
        self.extra_origins = tuple(extra_origins)
        # Bounded per-instance cache (lru_cache is thread-safe).
        self._bucket = functools.lru_cache(maxsize=4096)(self._generate_bucket)
        self._org_factor = functools.lru_cache(maxsize=1024)(self._generate_org_factor)
        self._pr_bucket = functools.lru_cache(maxsize=4096)(self._generate_pr_bucket)
        self._search_bucket = functools.lru_cache(maxsize=4096)(self._generate_search_bucket)

    def __repr__(self) -> str:
        return (
            f"SyntheticData(seed={self.seed!r}, sessions_per_hour={self.sessions_per_hour!r}, "
            f"users_per_org={self.users_per_org!r}, extra_origins={self.extra_origins!r})"
        )

    # -- generation ---------------------------------------------------------------------

    def _generate_org_factor(self, org_id: str) -> float:
        """Per-org activity multiplier in [0.5, 1.5)."""
        return 0.5 + random.Random(f"{self.seed}:{org_id}:org").random()

    def _base_rate(self, org_id: str, hour_index: int) -> float:
        """Expected sessions in the hour, before the hour's own random factor."""
        weekday = (hour_index // 24 + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = weekend
        lam = self.sessions_per_hour * self._org_factor(org_id) * _DIURNAL[hour_index % 24]
        return lam * 0.35 if weekday >= 5 else lam

    def _generate_bucket(self, org_id: str, hour_index: int) -> tuple[SimSession, ...]:
        # Every session consumes the same number of draws whatever the configuration
        # (users_per_org, extra_origins), so changing those only changes the affected fields.
        rng = random.Random(f"{self.seed}:{org_id}:{hour_index}")
        lam = self._base_rate(org_id, hour_index)
        lam *= 0.75 + 0.5 * rng.random()
        n = _poisson(rng, lam)
        start = hour_index * HOUR
        out: list[SimSession] = []
        for _ in range(n):
            created_at = start + int(rng.random() * HOUR)
            user_id = f"user-{1 + int(rng.random() * self.users_per_org)}"
            u_svc, svc_n = rng.random(), rng.random()
            service_user_id = f"svc-{1 + int(svc_n * 2)}" if u_svc < 0.2 else None
            u_pb, pb_n = rng.random(), rng.random()
            playbook_id = f"playbook-{1 + int(pb_n * 3)}" if u_pb < 0.3 else None
            used_search = rng.random() < 0.4
            origin = _ORIGIN_WEIGHTS[_pick(_ORIGIN_CUM, rng.random())][0]
            u_extra, extra_n = rng.random(), rng.random()
            if self.extra_origins and u_extra < _EXTRA_ORIGIN_SHARE:
                origin = self.extra_origins[int(extra_n * len(self.extra_origins))]
            size_i = _pick(_SIZE_CUM, rng.random())
            lo, hi = _SIZE_ACUS[size_i]
            acus = max(0.01, round(lo + (hi - lo) * rng.random(), 2))
            u_merge, u_slow, u_delay = rng.random(), rng.random(), rng.random()
            merged_at: int | None = None
            if u_merge < 0.45:
                # a third merge 1..5 days later (code hosts syncing once a day), the rest
                # 3 minutes .. 20 hours later
                slow = u_slow < 0.35
                delay = DAY + u_delay * 4 * DAY if slow else 180 + u_delay * 20 * HOUR
                merged_at = created_at + int(delay)
            out.append(
                SimSession(
                    created_at=created_at,
                    user_id=user_id,
                    service_user_id=service_user_id,
                    playbook_id=playbook_id,
                    used_search=used_search,
                    origin=origin,
                    size=SIZES[size_i],
                    acus=acus,
                    merged_at=merged_at,
                )
            )
        out.sort(key=lambda s: s.created_at)
        return tuple(out)

    def _generate_pr_bucket(self, org_id: str, hour_index: int) -> tuple[SimPr, ...]:
        out: list[SimPr] = []
        for i, s in enumerate(self._bucket(org_id, hour_index)):
            rng = random.Random(f"{self.seed}:{org_id}:{s.created_at}:{i}:pr")
            u_pr, u_close, u_slow, u_delay = (rng.random() for _ in range(4))
            closed_at: int | None = None
            if s.merged_at is None:
                if u_pr >= _UNMERGED_PR_SHARE:
                    continue  # no PR
                if u_close < _CLOSED_PR_SHARE:
                    slow = u_slow < 1 / 3
                    delay = DAY + u_delay * 5 * DAY if slow else 600 + u_delay * 30 * HOUR
                    closed_at = s.created_at + int(delay)
            out.append(
                SimPr(
                    created_at=s.created_at,
                    user_id=s.user_id,
                    service_user_id=s.service_user_id,
                    playbook_id=s.playbook_id,
                    merged_at=s.merged_at,
                    closed_at=closed_at,
                )
            )
        return tuple(out)

    def _generate_search_bucket(self, org_id: str, hour_index: int) -> tuple[SimSearch, ...]:
        rng = random.Random(f"{self.seed}:{org_id}:{hour_index}:searches")
        lam = self._base_rate(org_id, hour_index) * _SEARCHES_PER_SESSION
        lam *= 0.75 + 0.5 * rng.random()
        start = hour_index * HOUR
        out = [
            SimSearch(
                created_at=start + int(rng.random() * HOUR),
                user_id=f"user-{1 + int(rng.random() * self.users_per_org)}",
            )
            for _ in range(_poisson(rng, lam))
        ]
        out.sort(key=lambda s: s.created_at)
        return tuple(out)

    # -- public API ---------------------------------------------------------------------

    @property
    def users(self) -> tuple[str, ...]:
        """The user pool of every org: ``user-1 .. user-N`` (N = ``users_per_org``)."""
        return tuple(f"user-{i}" for i in range(1, self.users_per_org + 1))

    def sessions(self, org_id: str, start: int, end: int) -> Iterator[SimSession]:
        """Every session of ``org_id`` with ``start <= created_at < end``, in time order."""
        if end <= start:
            return
        for hour_index in range(start // HOUR, (end - 1) // HOUR + 1):
            for s in self._bucket(org_id, hour_index):
                if start <= s.created_at < end:
                    yield s

    def prs(self, org_id: str, start: int, end: int) -> Iterator[SimPr]:
        """The PR of every session of ``org_id`` with ``start <= created_at < end`` that
        opened one, in time order."""
        if end <= start:
            return
        for hour_index in range(start // HOUR, (end - 1) // HOUR + 1):
            for pr in self._pr_bucket(org_id, hour_index):
                if start <= pr.created_at < end:
                    yield pr

    def searches(self, org_id: str, start: int, end: int) -> Iterator[SimSearch]:
        """Every search of ``org_id`` with ``start <= created_at < end``, in time order."""
        if end <= start:
            return
        for hour_index in range(start // HOUR, (end - 1) // HOUR + 1):
            for search in self._search_bucket(org_id, hour_index):
                if start <= search.created_at < end:
                    yield search

    def metrics(
        self,
        org_id: str,
        time_after: int,
        time_before: int,
        now: int,
        user_ids: Collection[str] | None = None,
        service_user_ids: Collection[str] | None = None,
        playbook_id: str | None = None,
    ) -> dict[str, Any]:
        """The ``SessionMetricsResponse`` body for the window ``[time_after, time_before)``.

        Only sessions created before ``now`` exist; a PR counts as merged when
        ``merged_at <= now``. Empty ``user_ids``/``service_user_ids`` mean "no filter";
        when both are given a session matches if it matches either list.
        """
        users = frozenset(user_ids) if user_ids else None
        svcs = frozenset(service_user_ids) if service_user_ids else None
        by_origin: dict[str, int] = dict.fromkeys(PUBLIC_ORIGINS, 0)
        for extra in self.extra_origins:
            by_origin[extra] = 0
        by_size: dict[str, int] = dict.fromkeys(SIZES, 0)
        merged_by_size: dict[str, int] = dict.fromkeys(SIZES, 0)
        count = with_playbook = with_search = merged = 0
        acus_total = 0.0
        for s in self.sessions(org_id, time_after, min(time_before, now)):
            if users is not None or svcs is not None:
                hit = (users is not None and s.user_id in users) or (
                    svcs is not None and s.service_user_id in svcs
                )
                if not hit:
                    continue
            if playbook_id is not None and s.playbook_id != playbook_id:
                continue
            count += 1
            acus_total += s.acus
            if s.playbook_id is not None:
                with_playbook += 1
            if s.used_search:
                with_search += 1
            origin = "automation" if s.origin == "scheduled" else s.origin
            if origin in by_origin:
                by_origin[origin] += 1
            by_size[s.size] += 1
            if s.merged_at is not None and s.merged_at <= now:
                merged += 1
                merged_by_size[s.size] += 1
        return {
            "sessions_created_count": count,
            "sessions_created_by_size": by_size,
            "sessions_created_by_origin": by_origin,
            "sessions_created_with_playbook_count": with_playbook,
            "sessions_created_with_search_count": with_search,
            "sessions_with_merged_prs_count": merged,
            "sessions_with_merged_prs_by_size": merged_by_size,
            "avg_acus_per_session": acus_total / count if count else 0.0,
        }
