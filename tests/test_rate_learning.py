"""The rate a token runs at is learned from the API's answers (AIMD), on an injected clock:
from far below and from far above, it converges to what the server allows."""

from __future__ import annotations

import json
import math
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
        self.level = min(1.0, self.level + (now - self.last) * self.rate)
        self.last = now
        if self.level >= 1.0:
            self.level -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.level) / self.rate))


def drive(server_rate: float, *, start: float, seconds: float) -> tuple[list[float], int, int]:
    """Requests as fast as the limiter lets them through, for `seconds` of fake time.
    Returns the times of the accepted ones, how many were sent and how many got a 429."""
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=start, clock=clock)
    limiter = RateLimiter(start, clock=clock, sleep=clock.advance, adaptive=adaptive)
    server = TokenBucket(server_rate, clock)
    accepted: list[float] = []
    sent = limited = 0
    while clock.now < seconds:
        sent_at = limiter.acquire()
        sent += 1
        retry_after = server.take()
        if retry_after is None:
            accepted.append(clock.now)
            limiter.success()
        else:
            limited += 1
            limiter.limited(sent_at)
            limiter.block_for(retry_after)  # Retry-After is honoured: the token waits
        clock.advance(0.0005)  # the request's own time
    return accepted, sent, limited


@pytest.mark.parametrize("server_rate", [2.0, 20.0, 100.0])
@pytest.mark.parametrize("start", [1.0, 1000.0], ids=["from-below", "from-above"])
def test_the_rate_converges_to_what_the_server_allows(server_rate: float, start: float) -> None:
    seconds = 300.0
    accepted, sent, limited = drive(server_rate, start=start, seconds=seconds)
    # over the second half, the token runs at 85% to 100% of the server's rate
    late = [t for t in accepted if t >= seconds / 2]
    achieved = len(late) / (seconds / 2)
    assert 0.85 * server_rate <= achieved <= server_rate * 1.001
    # from far above it takes a 429 per halving to come down (ten from 1000/s to 2/s); from
    # the modest start a new token has, few answers are 429s over the whole run
    assert limited / sent <= (0.05 if start == 1.0 else 0.1), (limited, sent)


def test_an_idle_token_does_not_grow() -> None:
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=1.0, clock=clock)
    for _ in range(100):  # one request every 4 seconds: far below the rate
        adaptive.sent()
        clock.advance(4.0)
        adaptive.succeeded()
    assert adaptive.rate == 1.0


def test_one_congestion_is_one_cut_and_the_ceiling_holds() -> None:
    clock = FakeClock(0.0)
    adaptive = AdaptiveRate(start=40.0, ceiling=50.0, clock=clock)
    clock.advance(1.0)
    adaptive.limited(sent_at=0.9)
    assert adaptive.rate == 20.0  # halved, in slow start
    adaptive.limited(sent_at=0.95)  # sent before the cut: the same congestion
    assert adaptive.rate == 20.0
    for _ in range(30_000):  # a long busy stretch without 429s: up to the ceiling
        for _ in range(10):
            adaptive.sent()
        clock.advance(0.2)
        adaptive.succeeded()
    assert adaptive.rate == 50.0  # never above it


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
        assert "at 5 request(s)/s per token (not learned yet" in dry.output
        done = invoke(["--config", str(config), "backfill", "--since", "2026-10-01",
                       "--until", "2026-10-01T12:00:00Z"], env)
        assert done.exit_code == 0, done.output
        assert "144 of 144 window(s) collected" in done.output
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
