"""What one collection attempt produced, and the table rows a success becomes. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.payload import Fetched
from collector.targets import Target
from collector.windows import Window, to_datetime


@dataclass(frozen=True, slots=True)
class Collected:
    """A window fetched and validated; `next_due_at`/`settled` come from the planner."""

    target: Target
    window: Window
    fetched: Fetched
    next_due_at: int | None
    settled: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """A window that could not be fetched; it stays due at `next_due_at`."""

    target: Target
    window: Window
    error: str
    at: float
    next_due_at: int | None
    attempts: int = 1
    access_denied: bool = False


Outcome = Collected | Failed


def key(target: Target, window: Window) -> dict[str, Any]:
    return {
        "org_id": target.org_id,
        "segment": target.segment,
        "window_start": to_datetime(window.start),
    }


def window_row(item: Collected) -> dict[str, Any]:
    metrics = item.fetched.metrics
    return {
        **key(item.target, item.window),
        "window_end": to_datetime(item.window.end),
        "window_seconds": item.window.seconds,
        "sessions_created_count": metrics.sessions_created_count,
        "sessions_created_with_playbook_count": metrics.sessions_created_with_playbook_count,
        "sessions_created_with_search_count": metrics.sessions_created_with_search_count,
        "sessions_with_merged_prs_count": metrics.sessions_with_merged_prs_count,
        "avg_acus_per_session": metrics.avg_acus_per_session,
        "fetched_at": to_datetime(int(item.fetched.fetched_at)),
        "raw_body": item.fetched.raw,
    }


def origin_rows(item: Collected) -> list[dict[str, Any]]:
    base = key(item.target, item.window)
    return [
        {**base, "origin": origin, "sessions_created_count": count}
        for origin, count in item.fetched.metrics.sessions_created_by_origin.items()
    ]


def size_rows(item: Collected) -> list[dict[str, Any]]:
    base = key(item.target, item.window)
    metrics = item.fetched.metrics
    created = metrics.sessions_created_by_size
    merged = metrics.sessions_with_merged_prs_by_size
    return [
        {
            **base,
            "size": size,
            "sessions_created_count": created.get(size, 0),
            "sessions_with_merged_prs_count": merged.get(size, 0),
        }
        for size in {**created, **merged}
    ]

