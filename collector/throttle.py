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

#: About how many recent answers the share of 429s is measured over.
HORIZON = 500
#: Seconds over which the rate of answers that came back is measured.
GOODPUT_WINDOW = 2.0
#: Seconds without a 429 after which a token under its budget of 429s (any token, after
#: three times as long) probes for more as a new one does.
QUIET = 20.0


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

    The rate grows once per *round*: at least `step` seconds, one round trip (the smoothed
    time from letting a request through to its answer) and one request's spacing
    (`1 / rate`; two in slow start after the first round, whose growth needs a request
    spaced at the new rate: the first one after a change shows nothing of a limit), in which
    the token used at least a quarter of its rate (an idle token learns nothing, and the
    rate never floats far above what is used) and sent that many requests.

    - *Slow start*: from `start`, the rate grows fourfold every round until the first 429,
      which ends it: the rate falls back to 90% of the last rate that went a whole round
      without a 429 (an eighth of the rate that failed if none did).
    - *A later 429* cuts the rate to `cut` (95%) of the last rate that went a round without
      one, and the rate it failed at is remembered. Answers to requests let through before
      the last cut are not counted again: one congestion, one cut. A 429 before any answer
      came back at the new rate says the cut was not enough: the rate falls to the rate of
      the answers that came back over the last `GOODPUT_WINDOW` seconds (far above the
      limit, that is the limit; beside another process on the token, this one's share of
      it), by half at most, and if the API sent a `Retry-After` that still runs, the whole
      token waits it out (`limited` returns True); otherwise only the refused request
      waits.
    - *Recovery*: below half the rate that failed, the rate grows 10% a round, then 5% a
      round until 85% of it. Nearer, and past it, it creeps up with each answer, probing
      whether the API allows more (or has raised its limit), at a speed set by a budget
      of 429s: `budget` (2%) of the token's recent answers. Under budget, a cut is climbed
      back in about 1 / `budget` answers, so the rate settles where 429s come at about
      that share: just above the limit, where the API accepts exactly its limit and
      refuses the excess, or, where 429s come at random (a request that reached the API
      late, so the next one seemed early), where they are that frequent. Over budget (the
      429s of finding the limit, on a token with few answers yet), it creeps ten times
      slower. After `QUIET` seconds without a 429 under budget (three times as long over
      it), the limit may have risen (or another process on the token stopped): slow start
      again.
    - A `learned` start (what an earlier run learned) skips slow start: the rate creeps up
      from there, as just after a cut.
    - Never above `ceiling` (a configured `[api].rate_limit`), never below `floor`.
    """

    def __init__(
        self,
        *,
        start: float = 10.0,
        learned: bool = False,
        ceiling: float | None = None,
        floor: float = 0.5,
        step: float = 0.05,
        cut: float = 0.95,
        budget: float = 0.02,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = floor if ceiling is None else min(floor, ceiling)
        self.rate = self._clamp(start)
        self.step = step
        self.cut = cut
        self.budget = budget
        self.failed_at: float | None = None
        self._clock = clock
        self._slow_start = True
        self._grown = False  # whether the rate has grown since the start
        self._good: float | None = None  # the last rate that went a round without a 429
        # rounds and the rate of answers count from the first request (a limiter may be
        # built well before it), set again by `sent`
        self._started = self._round_start = clock()
        self._sending = False  # whether a request was let through yet
        self._rtt = 0.0  # smoothed seconds from letting a request through to its answer
        self._last_cut = float("-inf")
        if learned:
            # a rate an earlier run learned (just below a 429): probe from there, as just
            # after a cut, with no slow start
            self.failed_at, self._good, self._slow_start = self.rate / cut, self.rate, False
            self._last_cut = self._round_start
        self._quiet_until = float("-inf")
        self._used = 0
        self._answered = 0
        self._since_cut: int | None = None  # answers since the last cut; None before one
        self._successes: deque[float] = deque()  # when answers came back, over GOODPUT_WINDOW
        self._answers = 0  # answers, 429s included
        self._share = 0.0  # the share of 429s among the last `HORIZON` answers or so

    def _clamp(self, rate: float) -> float:
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        return max(self.floor, rate)

    def sent(self, at: float | None = None) -> None:
        """A request was let through (at `at`, the clock's time, when known)."""
        self._used += 1
        if not self._sending:
            self._sending = True
            self._started = self._round_start = self._clock() if at is None else at

    def _forget_before(self, moment: float) -> None:
        while self._successes and self._successes[0] < moment:
            self._successes.popleft()

    def _count(self, refused: bool) -> None:
        self._answers += 1
        self._share += (float(refused) - self._share) / min(self._answers, HORIZON)

    def succeeded(self, sent_at: float | None = None) -> None:
        """An answer came back that was not a 429, to a request let through at `sent_at`
        (the clock's time, when known): grow if a round has passed."""
        self._answered += 1
        self._count(False)
        if self._since_cut is not None:
            self._since_cut += 1
        now = self._clock()
        self._successes.append(now)
        self._forget_before(now - GOODPUT_WINDOW)
        if sent_at is not None:
            self._rtt += 0.125 * (now - sent_at - self._rtt)
        elapsed = now - self._round_start
        # slow start needs two requests a round, as the first after a change was spaced at
        # the old rate; the first round one, answered, sent a spacing after the first request
        # (which follows none)
        requests = 2.0 if self._slow_start else 1.0
        if self._slow_start and not self._grown and sent_at is not None:
            if sent_at < self._started + 1.0 / self.rate - 1e-9:
                return  # the first request, or one sent too soon after it: proves nothing
            requests = 1.0
        if elapsed < max(self.step, self._rtt, requests / self.rate):
            return
        busy = self._used >= max(requests, 0.25 * self.rate * elapsed)
        answered = self._answered
        self._round_start, self._used, self._answered = now, 0, 0
        if not busy:
            return
        self._good = self.rate
        self._grown = True
        # one round of growth at most, however long the gap (a Retry-After wait, say)
        failed = self.failed_at
        under = self._share <= self.budget
        if self._slow_start or failed is None:
            self.rate = self._clamp(self.rate * 4)
        elif self.rate < 0.5 * failed:
            self.rate = self._clamp(self.rate * 1.1)
        elif self.rate < 0.85 * failed:
            self.rate = self._clamp(self.rate * 1.05)
        elif now - self._last_cut >= (QUIET if under else 3 * QUIET):
            # long past the last 429: the limit may have risen, or another process on the
            # token stopped; find out as a new token does
            self._slow_start = True
            self.rate = self._clamp(self.rate * 4)
        else:
            # near the rate that failed, or past it: creep, a cut in 1 / budget answers
            # while the token's 429s are under budget
            speed = (1.0 - self.cut) * self.budget * (1.0 if under else 0.1)
            self.rate = self._clamp(self.rate + speed * answered * failed)

    def limited(self, sent_at: float, retry_after: float | None = None) -> bool:
        """A 429 answered a request let through at `sent_at` (the clock's time), with the
        API's `Retry-After` in seconds if it sent one. Returns True when the whole token
        should wait that Retry-After: the last cut did not help."""
        self._count(True)
        if sent_at < self._last_cut:
            return False  # sent at the old rate: this congestion was already answered
        now = self._clock()
        # refused again, and no answer came back at the rate of the last cut
        again = self._since_cut == 0
        self.failed_at = self.rate
        good = self._good
        if self._slow_start:
            self.rate = self._clamp(0.9 * good if good is not None else self.rate / 8)
            self._slow_start = False
        elif again:
            # no more than the answers that came back of late: far above the limit, that
            # is the limit; beside another process on the token, this one's share of it
            self._forget_before(now - GOODPUT_WINDOW)
            window = min(GOODPUT_WINDOW, max(now - self._started, self.step))
            goodput = len(self._successes) / window
            self.rate = self._clamp(min(self.cut * self.rate, max(goodput, 0.5 * self.rate)))
        else:
            self.rate = self._clamp(self.cut * min(self.rate, good or self.rate))
        token_waits = again and now < self._quiet_until
        self._last_cut = self._round_start = now
        self._quiet_until = now + (retry_after or 0.0)
        self._used = self._answered = self._since_cut = 0
        return token_waits


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
        self._last_grant = float("-inf")
        self._blocked_until = 0.0

    @property
    def rate(self) -> float:
        """Requests per second now: learned, or the fixed rate."""
        return self.adaptive.rate if self.adaptive is not None else self._fixed

    def acquire(self, until: float | None = None) -> float | None:
        """Wait for this caller's turn; returns when it was let through (a 429 to a request
        let through before the last cut answers the old pace: see `AdaptiveRate.limited`),
        or None, at once, when its turn would come after `until` (the clock's time).

        Callers queue in order and only the first waits for the clock, so the spacing is
        always that of the rate now: a rate that grows or shrinks applies to the very next
        request, not after a backlog of slots booked at the old rate. A block (`block_for`,
        a Retry-After) holds back every caller on the token; one that comes while a caller
        sleeps moves its turn, and `until` still bounds the wait."""
        with self._lock:
            now = self._clock()
            slot = max(self._next_free, self._blocked_until)
            if not self._queue and now >= slot:
                return self._grant(now)  # nobody waiting and the token free: go at once
            if until is not None and slot > until:
                return None
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
                ready = now >= slot or waited_for >= slot
                if ready or (until is not None and slot > until):
                    self._queue.popleft()
                    if self._queue:
                        self._queue[0].set()
                    return self._grant(max(now, slot)) if ready else None
                wait, waited_for = slot - now, slot
            self._sleep(wait)

    def _grant(self, now: float) -> float:
        """Let one request through at `now` (the lock held)."""
        self._last_grant = now
        self._next_free = max(now, self._next_free) + 1.0 / self.rate
        if self.adaptive is not None:
            self.adaptive.sent(now)
        return now

    def success(self, sent_at: float | None = None) -> None:
        """An answer that was not a 429 came to a request let through at `sent_at`."""
        if self.adaptive is not None:
            with self._lock:
                self.adaptive.succeeded(sent_at)

    def limited(self, sent_at: float, retry_after: float | None = None) -> bool:
        """A 429 answered a request let through at `sent_at`: slow down. True when the
        whole token should wait `retry_after` (see `AdaptiveRate.limited`); a fixed rate
        always says so."""
        if self.adaptive is None:
            return True
        with self._lock:
            token_waits = self.adaptive.limited(sent_at, retry_after)
            # the next request keeps the new spacing from the last one let through, not
            # the old spacing it was booked at
            self._next_free = max(self._next_free, self._last_grant + 1.0 / self.rate)
            return token_waits

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def blocked_for(self) -> float:
        """Seconds until the next request may go, ignoring the caller's own reservation."""
        with self._lock:
            return max(0.0, max(self._next_free, self._blocked_until) - self._clock())
