"""What one collection attempt produced: collected, failed or deferred. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from collector.payload import Fetched
from collector.targets import Target
from collector.windows import Window


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
    #: A missing permission (403): only this source of the org is refused.
    forbidden: bool = False


@dataclass(frozen=True, slots=True)
class Deferred:
    """A window a run did not reach: its deadline came, the rate limit held it back, or the
    process is stopping. Not a failure: nothing is written, and it stays due as it was."""

    target: Target
    window: Window
    reason: str
    attempts: int = 0


Outcome = Collected | Failed | Deferred
