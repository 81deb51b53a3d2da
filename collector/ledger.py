"""The ledger's rules, as SQL expressions over `collection_ledger`: when a row is due, when
nobody holds it, whose claims are gone, and what `status` counts. Only the store executes
them; the ledger is read and written nowhere else.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, and_, case, false, func, not_, or_, select

from collector.schema import LEDGER
from collector.targets import Target
from collector.windows import to_datetime


def due_clause(*, now: float, cutoff: float, interval: int) -> ColumnElement[bool]:
    """The one rule of when a ledger row is due, for the daemon's planner, its claims and
    the backfill alike: not settled, and either its due time has come by `cutoff`, or it is
    a window still open at `now` whose last fetch is an `interval` old by `cutoff` (so due
    times computed under a longer, older interval never hold an open window back)."""
    c = LEDGER.c
    came = or_(c.next_due_at.is_(None), c.next_due_at <= to_datetime(int(cutoff)))
    if interval > 0:
        open_and_old = and_(
            c.window_end > to_datetime(int(now)),
            # fetch times are stored in whole seconds, rounded down: a second of margin
            # keeps this rule from ever making a window due sooner than its interval
            c.last_fetched_at <= to_datetime(math.floor(cutoff - interval) - 1),
        )
        came = or_(came, open_and_old)
    return and_(c.settled == false(), came)


def of(target: Target) -> tuple[ColumnElement[bool], ...]:
    """The ledger rows of `target`."""
    c = LEDGER.c
    return (
        c.source == target.source.name, c.org_id == target.org_id, c.segment == target.segment
    )


def claim_owner(kind: str) -> str:
    """A name for the claims of one process: ``host:pid:kind:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only when `owner` names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's: its claims expire by themselves
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_clause(now: float) -> ColumnElement[bool]:
    """Nobody holds a live claim on the row."""
    c = LEDGER.c
    return or_(c.lease_expires_at.is_(None), c.lease_expires_at <= to_datetime(int(now)))


def status_summary(
    *, since: int, current_start: int, sources: Sequence[str]
) -> Select[tuple[object, ...]]:
    """Per source (of `sources`), org and segment: the newest collected window (never one
    after `current_start`, the open window's start: an older version could store windows
    that had not started), the last success, how many windows are collected, unsettled,
    collected in ``[since, current_start)``, and failing."""
    c = LEDGER.c
    collected = c.fetch_count > 0
    started = c.window_start <= to_datetime(current_start)
    return (
        select(
            c.source,
            c.org_id,
            c.segment,
            func.max(case((and_(collected, started), c.window_start))).label("newest"),
            func.max(c.last_fetched_at).label("last_success"),
            func.count(case((collected, 1))).label("collected"),
            func.count(case((and_(collected, not_(c.settled)), 1))).label("unsettled"),
            func.count(
                case((and_(collected, c.window_start >= to_datetime(since),
                           c.window_start < to_datetime(current_start)), 1))
            ).label("recent"),
            func.count(case((failing(), 1))).label("failing"),
        )
        .where(c.source.in_(list(sources)))
        .group_by(c.source, c.org_id, c.segment)
    )


def failing() -> ColumnElement[bool]:
    """A window is failing while its last attempt failed and it is not settled: a settled
    window holds a good value and is never fetched again."""
    c = LEDGER.c
    return and_(c.last_error.is_not(None), not_(c.settled))


def newest_failing(limit: int) -> Select[tuple[object, ...]]:
    """The newest `limit` failing windows of each source, org and segment, ranked in the
    database: a revoked token on a long backfill leaves thousands of them."""
    c = LEDGER.c
    ranked = (
        select(
            c.source, c.org_id, c.segment, c.window_start, c.window_end, c.failure_count,
            c.last_error,
            func.row_number()
            .over(partition_by=(c.source, c.org_id, c.segment), order_by=c.window_start.desc())
            .label("recency"),
        )
        .where(failing())
        .subquery()
    )
    return (
        select(ranked)
        .where(ranked.c.recency <= limit)
        .order_by(ranked.c.source, ranked.c.org_id, ranked.c.segment, ranked.c.recency)
    )
