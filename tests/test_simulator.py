"""Tests of the synthetic data (collector.sim.data) and the local API simulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.sim import Fault, Simulator, SyntheticData, TokenGrant
from collector.sim.data import PUBLIC_ORIGINS, SIZES
from tests.helpers import sim_http as http

DAY = 86_400
HOUR = 3_600
T0 = 1_733_356_800  # 2024-12-05 00:00:00 UTC (a Thursday)
TOKEN = "cog_sim_token"
PATH = "/v3/organizations/{}/metrics/sessions"
COUNT_KEYS = (
    "sessions_created_count",
    "sessions_created_with_playbook_count",
    "sessions_created_with_search_count",
    "sessions_with_merged_prs_count",
)
BUCKET_KEYS = (
    "sessions_created_by_origin",
    "sessions_created_by_size",
    "sessions_with_merged_prs_by_size",
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 30 * DAY)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    tokens = {
        TOKEN: TokenGrant(None),
        "cog_beta_only": TokenGrant(frozenset({"org-beta"})),
        "cog_no_metrics": TokenGrant(None, can_view_metrics=False),
    }
    with Simulator(data=SyntheticData(seed=7), tokens=tokens, clock=clock) as s:
        yield s


def get(
    client: httpx.Client, after: int, before: int, org: str = "org-alpha", **params: Any
) -> httpx.Response:
    return client.get(
        PATH.format(org), params={"time_after": after, "time_before": before, **params}
    )


def metrics(client: httpx.Client, after: int, before: int, **params: Any) -> dict[str, Any]:
    r = get(client, after, before, **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status
    assert body["type"] == "about:blank"
    return body


# -- synthetic data -------------------------------------------------------------------------


def test_same_seed_same_sessions_regardless_of_windows() -> None:
    a, b = SyntheticData(seed=3), SyntheticData(seed=3)
    # b is asked for small windows first: the answer must not depend on the query history
    small = [s for h in range(48) for s in b.sessions("org-x", T0 + h * HOUR, T0 + (h + 1) * HOUR)]
    assert list(a.sessions("org-x", T0, T0 + 2 * DAY)) == small
    assert list(b.sessions("org-x", T0, T0 + 2 * DAY)) == small
    assert len(small) > 0
    assert all(T0 <= s.created_at < T0 + 2 * DAY for s in small)
    assert [s.created_at for s in small] == sorted(s.created_at for s in small)


def test_different_orgs_and_seeds_differ() -> None:
    d = SyntheticData(seed=3)
    alpha = list(d.sessions("org-alpha", T0, T0 + DAY))
    assert alpha != list(d.sessions("org-beta", T0, T0 + DAY))
    assert alpha != list(SyntheticData(seed=4).sessions("org-alpha", T0, T0 + DAY))


def test_session_fields_look_real() -> None:
    sessions = list(SyntheticData(seed=1).sessions("org-alpha", T0, T0 + 14 * DAY))
    n = len(sessions)
    assert n > 500
    assert all(s.acus > 0 and round(s.acus, 2) == s.acus for s in sessions)
    assert all(s.size in SIZES for s in sessions)
    assert {s.user_id for s in sessions} == {f"user-{i}" for i in range(1, 9)}
    assert {s.service_user_id for s in sessions} == {None, "svc-1", "svc-2"}
    assert 0.1 < sum(s.service_user_id is not None for s in sessions) / n < 0.3
    assert 0.2 < sum(s.playbook_id is not None for s in sessions) / n < 0.4
    assert 0.3 < sum(s.used_search for s in sessions) / n < 0.5
    merged = [s.merged_at - s.created_at for s in sessions if s.merged_at is not None]
    assert 0.35 < len(merged) / n < 0.55
    assert min(merged) >= 60
    assert max(merged) <= 5 * DAY
    assert any(delay > DAY for delay in merged)
    hourly = [
        sum(1 for s in sessions if T0 + h * HOUR <= s.created_at < T0 + (h + 1) * HOUR)
        for h in range(24 * 14)
    ]
    assert 0 in hourly
    assert max(hourly) > 6


def test_extra_origins_are_exposed() -> None:
    d = SyntheticData(seed=1, extra_origins=("mobile",))
    m = d.metrics("org-alpha", T0, T0 + 7 * DAY, now=T0 + 30 * DAY)
    assert set(m["sessions_created_by_origin"]) == {*PUBLIC_ORIGINS, "mobile"}
    assert m["sessions_created_by_origin"]["mobile"] > 0
    with pytest.raises(ValueError, match="clash"):
        SyntheticData(extra_origins=("cli",))


def test_legacy_origins_hidden_and_scheduled_folded() -> None:
    d = SyntheticData(seed=7)
    short = 0
    for day in range(14):
        start = T0 + day * DAY
        m = d.metrics("org-alpha", start, start + DAY, now=T0 + 30 * DAY)
        by_origin = m["sessions_created_by_origin"]
        assert set(by_origin) == set(PUBLIC_ORIGINS)
        assert sum(by_origin.values()) <= m["sessions_created_count"]
        short += sum(by_origin.values()) < m["sessions_created_count"]
        sessions = list(d.sessions("org-alpha", start, start + DAY))
        assert by_origin["automation"] == sum(
            s.origin in ("automation", "scheduled") for s in sessions
        )
    assert short > 0


# -- the endpoint ---------------------------------------------------------------------------


def test_response_matches_schema_and_truth(sim: Simulator, client: httpx.Client) -> None:
    r = get(client, T0, T0 + DAY)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {*COUNT_KEYS, *BUCKET_KEYS, "avg_acus_per_session"}
    assert set(body["sessions_created_by_origin"]) == set(PUBLIC_ORIGINS)
    assert set(body["sessions_created_by_size"]) == set(SIZES)
    assert set(body["sessions_with_merged_prs_by_size"]) == set(SIZES)
    assert body["sessions_created_count"] > 0
    assert body == sim.truth("org-alpha", T0, T0 + DAY)


def test_hourly_answers_add_up_to_the_day(client: httpx.Client) -> None:
    day = metrics(client, T0, T0 + DAY)
    hours = [metrics(client, T0 + h * HOUR, T0 + (h + 1) * HOUR) for h in range(24)]
    for key in COUNT_KEYS:
        assert sum(h[key] for h in hours) == day[key], key
    for key in BUCKET_KEYS:
        for bucket, value in day[key].items():
            assert sum(h[key][bucket] for h in hours) == value, (key, bucket)
    weighted = sum(h["avg_acus_per_session"] * h["sessions_created_count"] for h in hours)
    assert weighted / day["sessions_created_count"] == pytest.approx(day["avg_acus_per_session"])
    assert any(h["sessions_created_count"] == 0 for h in hours)
    assert all(h["avg_acus_per_session"] == 0.0 for h in hours if h["sessions_created_count"] == 0)


def test_merged_counts_of_a_closed_window_grow_with_the_clock(
    clock: Clock, client: httpx.Client
) -> None:
    seen = []
    for days_later in (1, 2, 3, 6, 10):
        clock.now = T0 + days_later * DAY
        seen.append(metrics(client, T0, T0 + DAY))
    created = {m["sessions_created_count"] for m in seen}
    assert len(created) == 1  # the window is closed: no new sessions
    merged = [m["sessions_with_merged_prs_count"] for m in seen]
    assert merged == sorted(merged)
    assert merged[0] < merged[-1]
    assert merged[-2] == merged[-1]  # every PR merges within ~5 days
    assert sum(seen[-1]["sessions_with_merged_prs_by_size"].values()) == merged[-1]


def test_sessions_after_now_do_not_exist(clock: Clock, client: httpx.Client) -> None:
    clock.now = T0 + 12 * HOUR
    partial = metrics(client, T0, T0 + DAY)
    morning = metrics(client, T0, T0 + 12 * HOUR)
    assert partial["sessions_created_count"] == morning["sessions_created_count"]
    assert metrics(client, T0 + 13 * HOUR, T0 + DAY)["sessions_created_count"] == 0
    clock.now = T0 + 2 * DAY
    assert (
        metrics(client, T0, T0 + DAY)["sessions_created_count"] > morning["sessions_created_count"]
    )


def test_filters(sim: Simulator, client: httpx.Client) -> None:
    everyone = metrics(client, T0, T0 + 7 * DAY)
    r = client.get(
        PATH.format("org-alpha"),
        params=[
            ("time_after", T0),
            ("time_before", T0 + 7 * DAY),
            ("user_ids", "user-1"),
            ("user_ids", "user-2"),
        ],
    )
    two_users = r.json()
    assert "user_ids=user-1&user_ids=user-2" in str(r.request.url)
    assert 0 < two_users["sessions_created_count"] < everyone["sessions_created_count"]
    assert sim.requests[-1].user_ids == ("user-1", "user-2")
    one = metrics(client, T0, T0 + 7 * DAY, user_ids="user-1")
    assert 0 < one["sessions_created_count"] < two_users["sessions_created_count"]
    svc = metrics(client, T0, T0 + 7 * DAY, service_user_ids="svc-1")
    both = metrics(client, T0, T0 + 7 * DAY, user_ids="user-1", service_user_ids="svc-1")
    assert both == sim.truth(
        "org-alpha", T0, T0 + 7 * DAY, user_ids=["user-1"], service_user_ids=["svc-1"]
    )
    assert (
        max(one["sessions_created_count"], svc["sessions_created_count"])
        <= both["sessions_created_count"]
    )
    assert both["sessions_created_count"] <= (
        one["sessions_created_count"] + svc["sessions_created_count"]
    )
    per_playbook = [
        metrics(client, T0, T0 + 7 * DAY, playbook_id=f"playbook-{i}") for i in (1, 2, 3)
    ]
    assert all(m["sessions_created_count"] > 0 for m in per_playbook)
    assert all(
        m["sessions_created_count"] == m["sessions_created_with_playbook_count"]
        for m in per_playbook
    )
    assert (
        sum(m["sessions_created_count"] for m in per_playbook)
        == everyone["sessions_created_with_playbook_count"]
    )
    assert metrics(client, T0, T0 + DAY, user_ids="nobody")["sessions_created_count"] == 0


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer cog_wrong"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_401(sim: Simulator, headers: dict[str, str]) -> None:
    with http(sim.base_url, None, **headers) as c:
        r = get(c, T0, T0 + DAY, org="org-unknown")  # auth is checked before the org
    body = assert_problem(r, 401)
    assert body["instance"] == PATH.format("org-unknown")


def test_404(client: httpx.Client) -> None:
    assert "org-nope" in assert_problem(get(client, T0, T0 + DAY, org="org-nope"), 404)["detail"]
    assert_problem(client.get("/v3/elsewhere"), 404)
    assert_problem(client.get("/v3/organizations/org-alpha/metrics/nothing"), 404)


@pytest.mark.parametrize("token", ["cog_beta_only", "cog_no_metrics"])
def test_403(sim: Simulator, token: str) -> None:
    with http(sim.base_url, token) as c:
        body = assert_problem(get(c, "x", "y"), 403)  # type: ignore[arg-type]
        assert "ViewOrgMetrics" in body["detail"]
        if token == "cog_beta_only":
            assert get(c, T0, T0 + DAY, org="org-beta").status_code == 200


def test_422(client: httpx.Client) -> None:
    r = client.get(PATH.format("org-alpha"), params={"time_after": "soon"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/json"
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["query", "time_after"], ["query", "time_before"]]
    assert all(isinstance(d["msg"], str) and isinstance(d["type"], str) for d in detail)
    assert get(client, T0, 1.5).status_code == 422  # type: ignore[arg-type]


@pytest.mark.parametrize(("after", "before"), [(T0, T0), (T0 + 1, T0), (T0, T0 + 100 * DAY + 1)])
def test_400(client: httpx.Client, after: int, before: int) -> None:
    assert_problem(get(client, after, before), 400)


def test_max_range_is_inclusive(client: httpx.Client) -> None:
    assert get(client, T0 - 100 * DAY, T0).status_code == 200


def test_rate_limit(make_sim: Callable[..., Simulator]) -> None:
    tokens = {TOKEN: TokenGrant(None), "cog_other": TokenGrant(None)}
    s = make_sim(rate_limit=0.5, burst=2, tokens=tokens)
    with http(s.base_url, TOKEN) as c:
        assert [get(c, T0, T0 + HOUR).status_code for _ in range(2)] == [200, 200]
        r = get(c, T0, T0 + HOUR)
        assert_problem(r, 429)
        assert r.headers["retry-after"].isdigit()
        assert 1 <= int(r.headers["retry-after"]) <= 2
        other = get(c, T0, T0 + HOUR)
    with http(s.base_url, "cog_other") as c:
        assert get(c, T0, T0 + HOUR).status_code == 200  # buckets are per token
    assert other.status_code == 429
    assert s.count(status=429) == 2


def test_rate_limit_refills(make_sim: Callable[..., Simulator]) -> None:
    s = make_sim(rate_limit=50.0, burst=1)
    with http(s.base_url, TOKEN) as c:
        assert get(c, T0, T0 + HOUR).status_code == 200
        r = get(c, T0, T0 + HOUR)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"  # ceil, at least 1
        time.sleep(0.05)
        assert get(c, T0, T0 + HOUR).status_code == 200


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, "3", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_fault_status(sim: Simulator, client: httpx.Client, retry_after: str | None) -> None:
    sim.inject(Fault("status", status=503, retry_after=retry_after))
    r = get(client, T0, T0 + DAY)
    assert_problem(r, 503)
    assert r.headers.get("retry-after") == retry_after
    assert get(client, T0, T0 + DAY).status_code == 200  # count=1: used up
    assert [rec.status for rec in sim.requests] == [503, 200]


def test_fault_slow(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault("slow", delay=0.15))
    started = time.monotonic()
    assert get(client, T0, T0 + DAY).json() == sim.truth("org-alpha", T0, T0 + DAY)
    assert time.monotonic() - started >= 0.15
    sim.inject(Fault("slow", delay=0.3))
    params = {"time_after": T0, "time_before": T0 + 1}
    with pytest.raises(httpx.ReadTimeout):
        client.get(PATH.format("org-alpha"), params=params, timeout=0.05)


def test_fault_reset(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault("reset"))
    with pytest.raises(httpx.TransportError):
        get(client, T0, T0 + DAY)
    assert get(client, T0, T0 + DAY).status_code == 200  # the client reconnects
    assert [rec.status for rec in sim.requests] == [0, 200]


def test_fault_truncate(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault("truncate"))
    with pytest.raises(httpx.RemoteProtocolError):
        get(client, T0, T0 + DAY)
    assert get(client, T0, T0 + DAY).status_code == 200
    assert sim.count(status=0) == 1


def test_fault_truncate_raw(sim: Simulator) -> None:
    """At the socket level the body really is half of what Content-Length promises."""
    import socket

    host, port = sim.base_url.removeprefix("http://").split(":")
    sim.inject(Fault("truncate"))
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"GET {PATH.format('org-alpha')}?time_after={T0}&time_before={T0 + DAY} HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                 .split(b":")[1])  # fmt: skip
    assert b" 200 " in head.split(b"\r\n")[0]
    assert len(body) == length // 2
    full = json.dumps(sim.truth("org-alpha", T0, T0 + DAY)).encode()
    assert length == len(full)
    assert full.startswith(body)


@pytest.mark.parametrize(
    ("kind", "content_type", "content"),
    [
        ("html", "text/html; charset=utf-8", None),
        ("empty", "application/json", b""),
        ("nonjson", "application/json", None),
    ],
)
def test_fault_bad_200s(
    sim: Simulator, client: httpx.Client, kind: str, content_type: str, content: bytes | None
) -> None:
    sim.inject(Fault(kind))
    r = get(client, T0, T0 + DAY)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    if content is not None:
        assert r.content == content
        assert r.headers["content-length"] == "0"
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_fault_body(sim: Simulator, client: httpx.Client) -> None:
    truth = sim.truth("org-alpha", T0, T0 + DAY)
    origins = dict(truth["sessions_created_by_origin"], mobile=4)
    sim.inject(
        Fault("body", body={"anything": [1, 2]}),
        Fault("body", patch={"sessions_created_by_origin": origins}),
        Fault("body", patch={"sessions_created_count": None, "avg_acus_per_session": "x"}),
        Fault(
            "body",
            patch={"sessions_with_merged_prs_count": -1},
            remove=("sessions_created_by_size",),
        ),
    )
    assert get(client, T0, T0 + DAY).json() == {"anything": [1, 2]}
    assert get(client, T0, T0 + DAY).json()["sessions_created_by_origin"]["mobile"] == 4
    nulls = get(client, T0, T0 + DAY).json()
    assert nulls["sessions_created_count"] is None
    assert nulls["avg_acus_per_session"] == "x"
    removed = get(client, T0, T0 + DAY).json()
    assert "sessions_created_by_size" not in removed
    assert removed["sessions_with_merged_prs_count"] == -1
    assert (
        removed["sessions_created_with_search_count"] == truth["sessions_created_with_search_count"]
    )
    assert get(client, T0, T0 + DAY).json() == truth


def test_fault_matching_count_and_order(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(
        Fault("status", status=500, org_id="org-beta", count=2),
        Fault("status", status=502),
        Fault("status", status=504, count=-1, org_id="org-alpha"),
    )
    assert get(client, T0, T0 + DAY).status_code == 502  # beta's fault does not match
    assert [get(client, T0, T0 + DAY).status_code for _ in range(3)] == [504] * 3
    beta = [get(client, T0, T0 + DAY, org="org-beta").status_code for _ in range(3)]
    assert beta == [500, 500, 200]
    sim.clear_faults()
    assert get(client, T0, T0 + DAY).status_code == 200
    # validation and auth errors happen before faults and do not consume them
    sim.inject(Fault("status", status=500))
    assert get(client, T0 + 1, T0).status_code == 400
    assert get(client, T0, T0 + DAY).status_code == 500


def test_fault_dict_round_trip() -> None:
    f = Fault("body", count=-1, org_id="org-a", patch={"x": None}, remove=("y",))
    d = f.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Fault.from_dict(d) == f
    with pytest.raises(ValueError, match="kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_dict({"kind": "slow", "dely": 1})


# -- stats and admin ------------------------------------------------------------------------


def test_stats(sim: Simulator, client: httpx.Client) -> None:
    get(client, T0, T0 + DAY)
    get(client, T0, T0 + DAY, org="org-beta", playbook_id="playbook-1")
    get(client, T0, T0 + DAY, org="org-nope")
    client.get(PATH.format("org-alpha"))
    assert sim.count() == 4
    assert sim.count(org_id="org-alpha") == 2
    assert sim.count(status=200) == 2
    assert sim.count(org_id="org-alpha", status=422) == 1
    rec = sim.requests[1]
    assert (rec.org_id, rec.time_after, rec.time_before) == ("org-beta", T0, T0 + DAY)
    assert (rec.playbook_id, rec.status, rec.user_ids) == ("playbook-1", 200, ())
    assert rec.at == pytest.approx(time.time(), abs=60)
    sim.reset_stats()
    assert sim.count() == 0
    assert sim.requests == []


def test_admin_endpoints(sim: Simulator, clock: Clock) -> None:
    with (
        http(sim.base_url, None) as admin,
        http(sim.base_url, TOKEN) as c,
    ):
        r = admin.post("/_sim/faults", json=[Fault("status", status=500).to_dict(),
                                             {"kind": "html", "org_id": "org-beta"}])  # fmt: skip
        assert r.status_code == 200
        assert [f["kind"] for f in r.json()["faults"]] == ["status", "html"]
        assert get(c, T0, T0 + DAY).status_code == 500
        assert admin.delete("/_sim/faults").status_code == 200
        assert get(c, T0, T0 + DAY, org="org-beta").status_code == 200
        assert admin.post("/_sim/faults", json=[{"kind": "nope"}]).status_code == 400
        assert admin.post("/_sim/faults", content=b"{").status_code == 400

        stats = admin.get("/_sim/stats").json()["requests"]
        assert [(s["org_id"], s["status"]) for s in stats] == [
            ("org-alpha", 500),
            ("org-beta", 200),
        ]
        assert stats[0]["time_after"] == T0
        assert stats[0]["user_ids"] == []
        assert admin.delete("/_sim/stats").status_code == 200
        assert admin.get("/_sim/stats").json() == {"requests": []}

        assert admin.post("/_sim/clock", json={"now": T0 + 6 * HOUR}).json() == {
            "now": T0 + 6 * HOUR
        }
        assert sim.now() == T0 + 6 * HOUR
        truth = admin.get(
            "/_sim/truth",
            params={"org_id": "org-alpha", "time_after": T0, "time_before": T0 + DAY},
        ).json()
        assert truth == get(c, T0, T0 + DAY).json()
        assert truth == sim.data.metrics("org-alpha", T0, T0 + DAY, now=T0 + 6 * HOUR)
        filtered = admin.get(
            "/_sim/truth",
            params=[("org_id", "org-alpha"), ("time_after", T0), ("time_before", T0 + DAY),
                    ("user_ids", "user-1"), ("user_ids", "user-3")],
        ).json()  # fmt: skip
        assert filtered == get(c, T0, T0 + DAY, user_ids=["user-1", "user-3"]).json()
        assert admin.get("/_sim/truth", params={"org_id": "org-alpha"}).status_code == 400

        r = admin.post("/_sim/clock", json={"offset": -DAY})
        assert abs(r.json()["now"] - (time.time() - DAY)) < 5
        assert abs(sim.now() - (time.time() - DAY)) < 5
        assert admin.post("/_sim/clock", json={}).status_code == 400
        assert admin.get("/_sim/nothing").status_code == 404
        assert sim.count() == 2  # admin calls are not recorded


def test_method_not_allowed(client: httpx.Client) -> None:
    r = client.post(PATH.format("org-alpha"))
    assert_problem(r, 405)
    assert r.headers["allow"] == "GET"


def test_keep_alive_and_restart(make_sim: Callable[..., Simulator]) -> None:
    s = make_sim()
    url = s.base_url
    with http(url, TOKEN) as c:
        for _ in range(3):
            r = get(c, T0, T0 + HOUR)
            assert r.http_version == "HTTP/1.1"
            assert r.headers.get("connection") != "close"
        s.stop()
        s.stop()  # idempotent
        with pytest.raises(httpx.TransportError):
            get(c, T0, T0 + HOUR)
    with pytest.raises(RuntimeError):
        _ = s.base_url


def test_serve_in_a_subprocess() -> None:
    code = "from collector.sim import serve; serve('127.0.0.1', 0)"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with http(url, TOKEN) as c:
            assert get(c, T0, T0 + HOUR).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
