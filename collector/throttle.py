"""How fast and how often the client talks to the API: backoff, Retry-After, rate limit.

Time is injected (a clock and a sleep), so the policy is tested without waiting.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    Returns None when the header is absent or unreadable; never a negative number.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by a longest wait."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        A server's Retry-After wins when it is given (plus a little jitter, so that many
        clients told the same moment do not return together); otherwise the wait is
        "equal jitter": half of the exponential step fixed, half random.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap) + self.rng.uniform(0, 0.1)
        step = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return step / 2 + self.rng.uniform(0, step / 2)


class RateLimiter:
    """Spaces requests that share one token at most `rate` per second; thread-safe.

    Each caller reserves the next free slot and sleeps until it. `block_for` holds every
    caller back, for example after a 429 whose Retry-After tells the whole token to wait.
    """

    def __init__(self, rate: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = 0.0

    def reserve(self) -> float:
        """Take the next slot; returns how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_free)
            self._next_free = slot + self._interval
            return slot - now

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._next_free = max(self._next_free, self._clock() + seconds)

    def blocked_for(self) -> float:
        """Seconds until the next request may go, ignoring the caller's own reservation."""
        with self._lock:
            return max(0.0, self._next_free - self._clock())
