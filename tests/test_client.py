"""The API client against the simulator over real HTTP: answers, errors, retries."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from collector.client import LIMITED_RETRIES, DevinClient
from collector.config import parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.errors import (
    AuthenticationError,
    DeferredError,
    InvalidPayloadError,
    MalformedResponseError,
    NetworkError,
    OrgNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    TransientApiError,
)
from collector.payload import SessionMetrics
from collector.sim import Fault, Simulator, TokenGrant
from collector.targets import Target
from collector.throttle import RateLimiter, RetryPolicy, parse_retry_after
from collector.windows import Window
from tests.helpers import (
    OTHER_TOKEN,
    T0,
    TOKEN,
    FakeClock,
    MakeClient,
    SleepRecorder,
    config_data,
)

W = Window(T0 - 3600, T0)
ALPHA = Target("org-alpha")


def test_fetch_returns_the_simulators_answer(sim: Simulator, make_client: MakeClient) -> None:
    fetched = make_client().fetch(ALPHA, W)
    truth = sim.truth("org-alpha", W.start, W.end)
    assert fetched.raw == truth
    assert isinstance(fetched.metrics, SessionMetrics)
    assert fetched.metrics.sessions_created_count == truth["sessions_created_count"]
    assert fetched.attempts == 1
    (record,) = sim.requests
    assert (record.time_after, record.time_before) == (W.start, W.end)


def test_segment_filters_are_sent_as_repeated_keys(
    sim: Simulator, make_client: MakeClient
) -> None:
    target = Target("org-alpha", "team", user_ids=("user-1", "user-2"), playbook_id="playbook-1")
    fetched = make_client().fetch(target, Window(T0 - 86400, T0))
    (record,) = sim.requests
    assert record.user_ids == ("user-1", "user-2")
    assert record.playbook_id == "playbook-1"
    truth = sim.truth("org-alpha", T0 - 86400, T0, user_ids=["user-1", "user-2"],
                      playbook_id="playbook-1")
    assert fetched.raw == truth
    whole = sim.truth("org-alpha", T0 - 86400, T0)
    assert 0 < truth["sessions_created_count"] < whole["sessions_created_count"]


@pytest.mark.parametrize(
    ("target", "tokens", "error", "advice"),
    [
        (ALPHA, {"org-alpha": "cog_wrong"}, AuthenticationError, "valid, unexpired"),
        (ALPHA, {"org-alpha": OTHER_TOKEN}, PermissionDeniedError, "ViewOrgMetrics"),
        (Target("org-nope"), {"org-nope": TOKEN}, OrgNotFoundError, "Check the org id"),
    ],
)
def test_access_errors_are_not_retried_and_say_what_to_fix(
    sim: Simulator,
    make_client: MakeClient,
    target: Target,
    tokens: dict[str, str],
    error: type[Exception],
    advice: str,
) -> None:
    sleep = SleepRecorder()
    with pytest.raises(error) as info:
        make_client(tokens=tokens, sleep=sleep).fetch(target, W)
    assert advice in str(info.value)
    assert target.org_id in str(info.value)
    assert sim.count() == 1
    assert sleep.calls == []
    for token in tokens.values():
        assert token not in str(info.value)
        assert token not in repr(info.value)


def test_422_is_a_bug_report_with_the_detail(sim: Simulator, make_client: MakeClient) -> None:
    sim.inject(Fault("status", status=422, detail="time_after: bad"))
    with pytest.raises(RequestRejectedError) as info:
        make_client().fetch(ALPHA, W)
    assert "422" in str(info.value)
    assert "report it" in str(info.value)
    assert sim.count() == 1


def test_real_422_from_the_simulator_carries_loc_and_msg(
    sim: Simulator, make_client: MakeClient
) -> None:
    # a bound that is not an integer: the API's validation answers 422 with a detail list
    with pytest.raises(RequestRejectedError) as info:
        make_client().fetch(ALPHA, Window(T0, T0 + 1.5))  # type: ignore[arg-type]
    assert sim.count() == 1
    assert sim.count(status=422) == 1
    assert info.value.status == 422
    assert (
        "rejected the request with 422: query.time_before: Input should be a valid integer, "
        "unable to parse string as an integer. This is a bug"
    ) in str(info.value)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("status", status=500, count=2), ServerError),
        (Fault("status", status=502, count=2), ServerError),
        (Fault("status", status=503, count=2), ServerError),
        (Fault("status", status=429, count=2), RateLimitedError),
        (Fault("reset", count=2), NetworkError),
        (Fault("truncate", count=2), NetworkError),
        (Fault("nonjson", count=2), MalformedResponseError),
        (Fault("html", count=2), MalformedResponseError),
        (Fault("empty", count=2), MalformedResponseError),
    ],
)
def test_transient_failures_are_retried_until_success(
    sim: Simulator, make_client: MakeClient, fault: Fault, error: type[TransientApiError]
) -> None:
    sim.inject(fault)
    sleep = SleepRecorder()
    fetched = make_client(sleep=sleep).fetch(ALPHA, W)
    assert fetched.attempts == 3
    assert fetched.raw == sim.truth("org-alpha", W.start, W.end)
    assert sim.count(org_id="org-alpha") == 3
    assert len(sleep.calls) == 2
    # and when the fault outlasts the attempts, its own error class comes out; 429s are
    # pacing, waited out beyond the attempts: a run of more than LIMITED_RETRIES of them
    # defers the window (it is not failed)
    outlasting = 10 if fault.status != 429 else LIMITED_RETRIES + 10
    limited_before = sim.count(status=429)
    sim.inject(Fault(fault.kind, status=fault.status, count=outlasting))
    expected: type[Exception] = error if fault.status != 429 else DeferredError
    with pytest.raises(expected) as info:
        make_client(sleep=SleepRecorder()).fetch(ALPHA, W)
    if fault.status != 429:
        assert getattr(info.value, "attempts", None) == 4
    else:
        # deferred at the first 429 past the bound, never failed on max_attempts
        assert sim.count(status=429) - limited_before == LIMITED_RETRIES + 1
        assert "the window stays due for a later run" in str(info.value)
    assert TOKEN not in str(info.value)


def test_read_timeout_is_a_network_error(sim: Simulator) -> None:
    config = parse_config(
        config_data(sim.base_url, "sqlite://", api={"timeout": "1s"}), {}, source="t"
    )
    http = make_http_client(config)
    http.timeout = httpx.Timeout(0.2)
    client = DevinClient(
        http, Credentials({"org-alpha": TOKEN}),
        policy=RetryPolicy(max_attempts=2, backoff_base=0.001), sleep=SleepRecorder(),
    )
    sim.inject(Fault("slow", delay=1.0, count=2))
    with client, pytest.raises(NetworkError, match="did not answer in time"):
        client.fetch(ALPHA, W)


def test_retry_after_seconds_is_honoured(sim: Simulator, make_client: MakeClient) -> None:
    sim.inject(Fault("status", status=429, retry_after="7"))
    sleep = SleepRecorder()
    make_client(sleep=sleep).fetch(ALPHA, W)
    assert len(sleep.calls) == 1
    assert 7.0 <= sleep.calls[0] <= 7.2


def test_retry_after_http_date_is_honoured(
    sim: Simulator, make_client: MakeClient, clock: FakeClock
) -> None:
    when = datetime.fromtimestamp(clock.now + 12, UTC)
    sim.inject(Fault("status", status=503, retry_after=format_datetime(when, usegmt=True)))
    sleep = SleepRecorder()
    make_client(sleep=sleep).fetch(ALPHA, W)
    assert len(sleep.calls) == 1
    assert 12.0 <= sleep.calls[0] <= 12.2


def test_retry_after_beyond_the_cap_gives_up_at_once(
    sim: Simulator, make_client: MakeClient
) -> None:
    sim.inject(Fault("status", status=429, retry_after="3600", count=5))
    sleep = SleepRecorder()
    client = make_client(sleep=sleep, policy=RetryPolicy(retry_after_cap=60.0))
    with pytest.raises(RateLimitedError, match="longer than retry_after_cap"):
        client.fetch(ALPHA, W)
    assert sim.count() == 1
    # the token stays blocked: the next window is deferred at once, without a request
    with pytest.raises(DeferredError, match="may send again only in") as deferred:
        client.fetch(ALPHA, Window(W.end, W.end + 3600))
    assert deferred.value.attempts == 0
    assert sim.count() == 1
    assert sleep.calls == []


@pytest.mark.parametrize(
    ("last", "error"),
    [
        (Fault("status", status=401), AuthenticationError),
        (Fault("status", status=422), RequestRejectedError),
        (Fault("body", body=[1, 2]), InvalidPayloadError),
        (Fault("status", status=429, retry_after="3600"), RateLimitedError),
    ],
)
def test_an_error_after_retries_counts_every_request_made(
    sim: Simulator, make_client: MakeClient, last: Fault, error: type[Exception]
) -> None:
    """Two 500s, then an answer that is not retried: the error says three attempts (the
    retries metric counts attempts - 1), not one."""
    sim.inject(Fault("status", status=500, count=2))
    sim.inject(last)
    client = make_client(sleep=SleepRecorder(), policy=RetryPolicy(retry_after_cap=60.0))
    with pytest.raises(error) as info:
        client.fetch(ALPHA, W)
    assert sim.count() == 3
    assert getattr(info.value, "attempts", None) == 3


def test_429_without_retry_after_backs_off_exponentially(
    sim: Simulator, make_client: MakeClient
) -> None:
    sim.inject(Fault("status", status=429, count=3))
    sleep = SleepRecorder()
    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=100.0)
    make_client(sleep=sleep, policy=policy).fetch(ALPHA, W)
    assert len(sleep.calls) == 3
    for attempt, waited in enumerate(sleep.calls, start=1):
        step = 2.0 ** (attempt - 1)
        assert step / 2 <= waited <= step


@pytest.mark.parametrize(
    ("patch", "remove", "problem"),
    [
        ({"sessions_created_count": None}, (), "sessions_created_count"),
        ({}, ("sessions_created_count",), "sessions_created_count: Field required"),
        ({"sessions_created_count": -1}, (), "greater than or equal to 0"),
        ({"sessions_created_count": "12"}, (), "valid integer"),
        ({"sessions_created_count": 1.5}, (), "valid integer"),
        ({"sessions_with_merged_prs_count": True}, (), "valid integer"),
        ({"avg_acus_per_session": "2.5"}, (), "avg_acus_per_session"),
        ({"sessions_created_by_size": {"xs": -2}}, (), "sessions_created_by_size.xs"),
        ({"sessions_created_by_origin": None}, (), "sessions_created_by_origin"),
    ],
)
def test_schema_violations_reject_the_response(
    sim: Simulator,
    make_client: MakeClient,
    patch: dict[str, object],
    remove: tuple[str, ...],
    problem: str,
) -> None:
    sim.inject(Fault("body", patch=patch, remove=remove))
    sleep = SleepRecorder()
    with pytest.raises(InvalidPayloadError) as info:
        make_client(sleep=sleep).fetch(ALPHA, W)
    assert problem in str(info.value)
    assert "nothing was stored" in str(info.value)
    assert sim.count() == 1  # not retried: the same answer would come back


def test_new_origin_is_kept_and_missing_bucket_key_is_zero(
    sim: Simulator, make_client: MakeClient
) -> None:
    truth = sim.truth("org-alpha", W.start, W.end)
    by_origin = {k: v for k, v in truth["sessions_created_by_origin"].items() if k != "slack"}
    by_origin["hologram"] = 3
    by_size = {k: v for k, v in truth["sessions_created_by_size"].items() if k != "xl"}
    sim.inject(Fault("body", patch={"sessions_created_by_origin": by_origin,
                                    "sessions_created_by_size": by_size}))
    metrics = make_client().fetch(ALPHA, W).metrics
    assert isinstance(metrics, SessionMetrics)
    assert metrics.sessions_created_by_origin["hologram"] == 3
    assert metrics.sessions_created_by_origin["slack"] == 0
    assert metrics.sessions_created_by_size["xl"] == 0


def test_parse_retry_after() -> None:
    assert parse_retry_after("5", 0) == 5.0
    assert parse_retry_after(" 2.5 ", 0) == 2.5
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 500.0) == 0.0
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("-3", 0) == 0.0


def test_rate_limiter_spaces_requests() -> None:
    clock = FakeClock(0)
    sleep = SleepRecorder(clock)
    limiter = RateLimiter(4.0, clock=clock, sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert clock.now == pytest.approx(1.0)  # 5 requests at 4/s: the 5th leaves at t=1s
    limiter.block_for(10)
    assert limiter.blocked_for() == pytest.approx(10)


def test_client_rate_limit_keeps_under_a_server_limit(make_client: MakeClient) -> None:
    """The server's bucket runs on real time, so this test does too (30 requests at 50/s)."""
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}, rate_limit=50.0,
                   burst=5) as limited:
        config = parse_config(config_data(limited.base_url, "sqlite://"), {}, source="t")
        with DevinClient(make_http_client(config), Credentials({"org-alpha": TOKEN}),
                         rate_limit=50.0) as client:
            for hour in range(30):
                client.fetch(ALPHA, Window(T0 + hour * 3600, T0 + (hour + 1) * 3600))
        assert limited.count(status=429) == 0
        assert limited.count(status=200) == 30


def test_credentials_never_show_tokens(make_client: MakeClient) -> None:
    credentials = Credentials({"org-alpha": TOKEN})
    assert TOKEN not in repr(credentials)
    assert TOKEN not in str(credentials)
    assert TOKEN not in repr(make_client())
    assert credentials.scrub(f"x {TOKEN} y") == "x *** y"
