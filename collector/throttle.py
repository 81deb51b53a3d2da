"""How fast and how often the client talks to the API: backoff, Retry-After, and a rate
limit per token that is fixed or learned from the API's answers.

Time is injected (a clock and a sleep), so the policy is tested without waiting.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
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


class AdaptiveRate:
    """How fast one token may go, learned from the API's answers: additive increase,
    multiplicative decrease, as TCP does. Pure: time is injected.

    - *Slow start*: from `start`, the rate doubles every `step` seconds in which the token
      used at least half of it, until the first 429.
    - A 429 cuts the rate, by half when far above the limit (in slow start, or limited again
      before a quarter of a second of answers came back at the new rate), by 10% near it,
      and remembers the rate that failed. Answers to requests sent before the cut are not
      counted again: one congestion, one cut.
    - *Recovery*: below 90% of the rate that failed, the rate grows 4% a step; then it
      creeps up by 0.5% of it a second, probing whether the API allows more; past it with
      no 429, the limit was higher (or has risen), and it grows 1% a step.
    - Never above `ceiling` (a configured `[api].rate_limit`), never below `floor`.
    """

    def __init__(
        self,
        *,
        start: float = 1.0,
        ceiling: float | None = None,
        floor: float = 0.05,
        step: float = 0.05,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = floor
        self.rate = self._clamp(start)
        self.step = step
        self.failed_at: float | None = None
        self._clock = clock
        self._slow_start = True
        self._last_step = clock()
        self._last_cut = float("-inf")
        self._used = 0
        self._answered = 0

    def _clamp(self, rate: float) -> float:
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        return max(self.floor, rate)

    def sent(self) -> None:
        """A request was let through."""
        self._used += 1

    def succeeded(self) -> None:
        """An answer came back that was not a 429: grow if a step has passed and the token
        used at least half of its rate meanwhile (an idle token learns nothing)."""
        self._answered += 1
        now = self._clock()
        elapsed = now - self._last_step
        if elapsed < self.step:
            return
        busy = self._used >= 0.5 * self.rate * elapsed
        self._last_step, self._used = now, 0
        if not busy:
            return
        # one step of growth at most, however long the gap (a Retry-After wait, say)
        if self._slow_start:
            self.rate = self._clamp(self.rate * 2)
        elif self.failed_at is None or self.rate < 0.9 * self.failed_at:
            self.rate = self._clamp(self.rate * 1.04)
        elif self.rate < self.failed_at:
            # near the rate that failed: creep, probing whether the API allows more
            self.rate = self._clamp(self.rate + 0.005 * self.failed_at * min(elapsed, 1.0))
        else:
            # past it without a 429: the limit was higher (or has risen); grow again
            self.rate = self._clamp(self.rate * 1.01)

    def limited(self, sent_at: float) -> None:
        """A 429 answered a request let through at `sent_at` (the clock's time)."""
        if sent_at < self._last_cut:
            return  # sent at the old rate: this congestion was already answered
        now = self._clock()
        # far above the limit (slow start overshot, or limited again before a quarter of a
        # second of answers came back at the new rate): halve; near it: a tenth less
        far = self._slow_start or self._answered < 0.25 * self.rate
        self.failed_at = self.rate
        self.rate = self._clamp(self.rate * (0.5 if far else 0.9))
        self._slow_start = False
        self._last_cut = self._last_step = now
        self._used = self._answered = 0


class RateLimiter:
    """Spaces requests that share one token at most `rate` per second; thread-safe.

    Callers take turns (`acquire`); `block_for` holds every caller back, for example after
    a 429 whose Retry-After tells the whole token to wait.
    With an `AdaptiveRate`, the spacing follows what it learns from the answers (`success`,
    `limited`); without, the rate is fixed.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        adaptive: AdaptiveRate | None = None,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._fixed = rate
        self.adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._queue: deque[threading.Event] = deque()
        self._next_free = 0.0
        self._blocked_until = 0.0

    @property
    def rate(self) -> float:
        """Requests per second now: learned, or the fixed rate."""
        return self.adaptive.rate if self.adaptive is not None else self._fixed

    def acquire(self) -> float:
        """Wait for this caller's turn; returns when it was let through (a 429 to a request
        let through before the last cut answers the old pace: see `AdaptiveRate.limited`).

        Callers queue in order and only the first waits for the clock, so the spacing is
        always that of the rate now: a rate that grows or shrinks applies to the very next
        request, not after a backlog of slots booked at the old rate. A block (`block_for`,
        a Retry-After) holds back every caller on the token."""
        with self._lock:
            now = self._clock()
            if not self._queue and now >= max(self._next_free, self._blocked_until):
                return self._grant(now)  # nobody waiting and the token free: go at once
            turn = threading.Event()
            self._queue.append(turn)
            if len(self._queue) == 1:
                turn.set()
        turn.wait()
        waited_for = float("-inf")
        while True:
            with self._lock:
                now = self._clock()
                slot = max(self._next_free, self._blocked_until)
                # the slot has come, or this caller already slept until it (and no block
                # moved it meanwhile)
                if now >= slot or waited_for >= slot:
                    self._queue.popleft()
                    if self._queue:
                        self._queue[0].set()
                    return self._grant(max(now, slot))
                wait, waited_for = slot - now, slot
            self._sleep(wait)

    def _grant(self, now: float) -> float:
        """Let one request through at `now` (the lock held)."""
        self._next_free = max(now, self._next_free) + 1.0 / self.rate
        if self.adaptive is not None:
            self.adaptive.sent()
        return now

    def success(self) -> None:
        if self.adaptive is not None:
            with self._lock:
                self.adaptive.succeeded()

    def limited(self, sent_at: float) -> None:
        if self.adaptive is not None:
            with self._lock:
                self.adaptive.limited(sent_at)

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def blocked_for(self) -> float:
        """Seconds until the next request may go, ignoring the caller's own reservation."""
        with self._lock:
            return max(0.0, max(self._next_free, self._blocked_until) - self._clock())
