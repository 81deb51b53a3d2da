"""The rate a token runs at is learned from the API's answers (AIMD), on an injected clock:
from far below and from far above, it converges to what the server allows."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from collector.errors import ServerError
from collector.sim import Fault, Simulator, TokenGrant
from collector.targets import Target
from collector.throttle import AdaptiveRate, RateLimiter, RetryPolicy
from collector.windows import Window
from tests.helpers import T0, TOKEN, FakeClock, MakeClient, invoke

ALPHA = Target("org-alpha")
W = Window(T0 - 3600, T0)


class TokenBucket:
    """The server's limit: `rate` per second, burst 1, Retry-After in whole seconds."""

    def __init__(self, rate: float, clock: FakeClock) -> None:
        self.rate, self.clock = rate, clock
        self.level, self.last = 1.0, clock.now

    def take(self) -> int | None:
        now = self.clock.now
        self.level = min(1.0, self.level + max(0.0, now - self.last) * self.rate)
        self.last = max(self.last, now)
        if self.level >= 1.0:
            self.level -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.level) / self.rate))


def drive(
    server_rate: float, *, start: float, seconds: float, late: float = 0.0
) -> tuple[list[float], int, int]:
    """Requests as fast as the limiter lets them through, for `seconds` of fake time; with
    `late`, one request in two hundred reaches the server that many seconds late (a thread that
    lost the CPU), so the next one arrives too soon after it. Returns the times of the
    accepted ones, how many were sent and how many got a 429."""
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=start, clock=clock)
    limiter = RateLimiter(start, clock=clock, sleep=clock.advance, adaptive=adaptive)
    server = TokenBucket(server_rate, clock)
    rng = random.Random(7)
    accepted: list[float] = []
    sent = limited = 0
    while clock.now < seconds:
        sent_at = limiter.acquire()
        assert sent_at is not None
        sent += 1
        delay = late if rng.random() < 0.005 else 0.0
        clock.advance(delay)
        retry_after = server.take()
        clock.advance(-delay)
        if retry_after is None:
            accepted.append(clock.now)
            limiter.success()
        else:
            limited += 1
            if limiter.limited(sent_at, retry_after):
                limiter.block_for(retry_after)  # the whole token waits it out
            # otherwise only the refused request waits, and is sent again later
        clock.advance(0.0005)  # the request's own time
    return accepted, sent, limited


@pytest.mark.parametrize("late", [0.0, 0.003], ids=["punctual", "late-requests"])
@pytest.mark.parametrize("server_rate", [2.0, 20.0, 100.0])
@pytest.mark.parametrize("start", [1.0, 1000.0], ids=["from-below", "from-above"])
def test_the_rate_converges_to_what_the_server_allows(
    server_rate: float, start: float, late: float
) -> None:
    seconds = 300.0
    accepted, sent, limited = drive(server_rate, start=start, seconds=seconds, late=late)
    # over the second half, the token runs at 85% to 100% of the server's rate
    second_half = [t for t in accepted if t >= seconds / 2]
    achieved = len(second_half) / (seconds / 2)
    assert 0.85 * server_rate <= achieved <= server_rate * 1.001
    # over the whole run, at most 5% of the answers are 429s
    assert limited / sent <= 0.05, (limited, sent)


def test_an_idle_token_does_not_grow() -> None:
    """The rate floats at most four times above what the token uses."""
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=1.0, clock=clock)
    for _ in range(100):  # two requests every 10 seconds: a fifth of the rate
        adaptive.sent()
        adaptive.sent()
        clock.advance(10.0)
        adaptive.succeeded()
    assert adaptive.rate == 1.0
    for _ in range(100):  # two every 8 seconds, a quarter of it: busy enough to grow
        adaptive.sent()
        adaptive.sent()
        clock.advance(8.0)
        adaptive.succeeded()
    assert adaptive.rate == 4.0  # and no further: at 4/s, that is a sixteenth


def test_one_congestion_is_one_cut_and_the_ceiling_holds() -> None:
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=40.0, ceiling=50.0, clock=clock)
    clock.advance(1.0)
    assert adaptive.limited(sent_at=0.9, retry_after=1.0) is False
    assert adaptive.rate == 5.0  # an eighth: slow start ended before a round went well
    assert adaptive.limited(sent_at=0.95) is False  # sent before the cut: the same one
    assert adaptive.rate == 5.0
    for _ in range(30_000):  # a long busy stretch without 429s: up to the ceiling
        for _ in range(10):
            adaptive.sent()
        clock.advance(0.2)
        adaptive.succeeded()
    assert adaptive.rate == 50.0  # never above it


def test_a_429_after_answers_at_the_new_rate_is_a_small_cut_and_one_before_halves() -> None:
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=10.0, clock=clock)
    # slow start: 10 (proved by a request sent 0.1 s after the first), 40, 160
    for _ in range(3):
        for _ in range(int(adaptive.rate * 0.1) + 2):
            adaptive.sent()
        clock.advance(0.105)
        adaptive.succeeded(sent_at=clock.now - 0.005)
    assert adaptive.rate == 640.0
    assert adaptive.limited(sent_at=clock.now, retry_after=1.0) is False
    assert adaptive.rate == pytest.approx(144.0)  # 90% of the last rate that went well
    clock.advance(0.01)
    adaptive.succeeded()  # an answer at the new rate
    assert adaptive.limited(sent_at=clock.now, retry_after=1.0) is False
    assert adaptive.rate == pytest.approx(144.0 * 0.95)  # near the limit: 5% less
    clock.advance(0.01)
    # refused again before any answer at the new rate, within its Retry-After: halve, and
    # the whole token waits
    assert adaptive.limited(sent_at=clock.now, retry_after=1.0) is True
    assert adaptive.rate == pytest.approx(144.0 * 0.95 * 0.5)
    clock.advance(2.0)
    assert adaptive.limited(sent_at=clock.now) is False  # again, but no Retry-After runs
    assert adaptive.rate == pytest.approx(144.0 * 0.95 * 0.25)


def test_the_first_request_alone_proves_no_rate() -> None:
    """Slow start grows first on the answer to a request spaced at the start rate after the
    first one, however long the limiter waited before its first request."""
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=10.0, clock=clock)
    clock.advance(0.3)  # the limiter is built before the plan starts
    adaptive.sent(clock.now)
    clock.advance(0.005)
    adaptive.succeeded(sent_at=0.3)
    assert adaptive.rate == 10.0  # one request can meet no limit
    clock.advance(0.095)
    adaptive.sent(clock.now)  # the next, one spacing after the first
    clock.advance(0.005)
    adaptive.succeeded(sent_at=0.4)
    assert adaptive.rate == 40.0


def test_a_round_lasts_at_least_a_round_trip() -> None:
    """Against a slow API, slow start grows once per round trip, not faster than the
    answers that would show a limit can come back."""

    def grow(round_trip: float | None) -> float:
        clock = FakeClock(0.0)
        adaptive = AdaptiveRate(start=10.0, clock=clock)
        for _ in range(8):  # an answer every 0.1 s, for a busy token
            for _ in range(int(adaptive.rate * 0.1) + 2):
                adaptive.sent()
            clock.advance(0.1)
            adaptive.succeeded(None if round_trip is None else clock.now - round_trip)
        return adaptive.rate

    # no send time known: the first round lasts two requests' spacing at 10/s (0.2 s), then
    # one answer each 0.1 s; known: the first answer to a request sent 0.1 s after the
    # first (the second answer here), then the same
    assert grow(None) == 10.0 * 4**7
    assert grow(0.01) == 10.0 * 4**7  # a fast API
    # answers that take 0.5 s: the first growth waits for the answer to a request sent
    # 0.1 s after the first (the sixth), the next for a smoothed round trip (from 0 towards
    # 0.5 by an eighth per answer) that the last two answers do not reach
    assert grow(0.5) == 10.0 * 4


def test_a_backfill_learns_the_limit_and_says_so(tmp_path: Path) -> None:
    """Against a server limiting the token to 40 requests/s (burst 1) that the
    configuration does not mention: the backfill completes, few answers are 429s, and the
    rate it learned is what `status` shows and what the next dry run estimates with."""
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)},
                   rate_limit=40.0, burst=1.0) as sim:
        config = tmp_path / "c.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n'
            f'[api]\nbase_url = "{sim.base_url}"\nconcurrency = 8\n'
            'backoff_base = 0.01\nbackoff_max = 0.05\n[windows]\nsize = "5m"\n'
            '[schedule]\ninterval = "5m"\n'
            '[sources]\nenabled = ["sessions"]\n'
            '[[orgs]]\nid = "org-alpha"\n'
        )
        env = {"DEVIN_API_TOKEN": TOKEN}
        assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
        dry = invoke(["--config", str(config), "backfill", "--since", "2026-10-01",
                      "--until", "2026-10-01T12:00:00Z", "--dry-run"], env)
        assert "at 10 request(s)/s per token (not learned yet" in dry.output
        # a day of 5-minute windows: the few 429s of finding the limit are a small share
        done = invoke(["--config", str(config), "backfill", "--since", "2026-10-01",
                       "--until", "2026-10-02"], env)
        assert done.exit_code == 0, done.output
        assert "288 of 288 window(s) collected" in done.output
        limited = sim.count(status=429)
        assert 0 < limited <= 0.05 * sim.count()  # it met the limit, and rarely
        status = invoke(["--config", str(config), "status", "--json"], env)
        (row,) = json.loads(status.output)
        rate = row["token_rate"]["requests_per_second"]
        assert row["token_rate"]["token_env"] == "$DEVIN_API_TOKEN"
        assert 20.0 <= rate <= 44.0  # near the server's 40/s
        dry = invoke(["--config", str(config), "backfill", "--since", "2026-10-02",
                      "--until", "2026-10-02T12:00:00Z", "--dry-run"], env)
        assert f"at {rate:g} request(s)/s per token (learned by the last run" in dry.output


def test_429s_are_waited_out_beyond_max_attempts(sim: Simulator, make_client: MakeClient) -> None:
    """A 429 is pacing, not failure: eight of them in a row do not use up three attempts,
    and each slows the token down; a 5xx still counts."""
    sim.inject(Fault("status", status=429, count=8))
    client = make_client(policy=RetryPolicy(max_attempts=3, backoff_base=0.001,
                                            backoff_max=0.002), rate_limit=100.0)
    fetched = client.fetch(ALPHA, W)
    assert fetched.attempts == 9
    assert sim.count(status=429) == 8
    assert client.rates()["token 1"] < 100.0  # it learned to slow down
    sim.inject(Fault("status", status=503, count=3))
    with pytest.raises(ServerError):
        client.fetch(ALPHA, W)


def test_a_learned_start_creeps_up_instead_of_slow_start() -> None:
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=40.0, learned=True, clock=clock)
    for _ in range(10):  # ten busy rounds of 0.1 s, four answers each
        for _ in range(4):
            adaptive.sent()
            adaptive.succeeded()
        clock.advance(0.1)
    # creeping, 0.1% of the rate that failed (40 / 0.95) an answer: no fourfold growth
    assert 40.0 < adaptive.rate < 42.0
    assert adaptive.limited(sent_at=clock.now) is False
    assert 0.95 * 40.0 < adaptive.rate < 0.95 * 42.0  # a 5% cut, not the 90% of slow start


def test_a_client_starts_each_token_where_the_last_run_left_it(
    make_client: MakeClient,
) -> None:
    client = make_client(learned_rates={"token 1": 37.5}, rate_limit=None)
    assert client.rates() == {"token 1": 37.5}
    capped = make_client(learned_rates={"token 1": 37.5}, rate_limit=20.0)
    assert capped.rates() == {"token 1": 20.0}  # a configured ceiling still caps it
    fresh = make_client(rate_limit=None)
    assert fresh.rates() == {"token 1": 10.0}  # nothing learned: the modest start


def test_refused_again_the_rate_falls_to_the_answers_that_came_back_by_half_at_most() -> None:
    """Beside another process on the token, or far above the limit, the answers that came
    back over the last two seconds say what this process gets: it falls there, not lower
    (so it does not sink to nothing while the other takes the limit)."""
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=100.0, learned=True, clock=clock)
    for _ in range(240):  # three seconds of answers at 80/s
        adaptive.sent()
        clock.advance(1 / 80)
        adaptive.succeeded()
    rate = adaptive.rate
    assert adaptive.limited(sent_at=clock.now) is False
    assert adaptive.rate == pytest.approx(0.95 * rate, rel=0.02)  # a first 429: 5%
    clock.advance(0.01)
    assert adaptive.limited(sent_at=clock.now) is False  # refused again, no Retry-After
    assert adaptive.rate == pytest.approx(80.0, rel=0.02)  # what came back: 160 in 2 s


def test_a_block_that_comes_while_a_caller_waits_its_turn_is_bounded_too() -> None:
    """A caller sleeping until its slot when a Retry-After of an hour blocks the token
    gives up at its bound instead of sleeping the hour (the client then defers the window)."""
    clock = FakeClock(0.0)
    limiter: RateLimiter

    blocks = [3600.0]

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if blocks:  # another worker's 429 arrives meanwhile
            limiter.block_for(blocks.pop())

    limiter = RateLimiter(2.0, clock=clock, sleep=sleep)
    assert limiter.acquire() == 0.0  # the first goes at once; the next slot is at 0.5 s
    assert limiter.acquire(until=120.0) is None
    assert clock.now == 0.5  # it slept until its slot, and no longer
    assert limiter.acquire(until=120.0) is None  # the next caller does not even queue
    assert clock.now == 0.5
    assert limiter.acquire() == 3600.5  # without a bound, the block is waited out
