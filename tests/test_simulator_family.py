"""Tests of the simulator's metrics family beyond sessions (collector.sim.family and the
endpoints serving it): PRs, searches, active users, consumption, organizations, /v3/self."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from collector.sim import Fault, RequestRecord, Simulator, SyntheticData, TokenGrant
from collector.sim.family import billing_day_start
from tests.helpers import sim_http as http

DAY = 86_400
HOUR = 3_600
T0 = 1_733_356_800  # 2024-12-05 00:00:00 UTC (a Thursday)
MONDAY = T0 - 3 * DAY  # 2024-12-02
TOKEN = "cog_sim_token"
ORG = "/v3/organizations/{}/{}"
PR_KEYS = ("prs_created_count", "prs_opened_count", "prs_closed_count", "prs_merged_count")
METRICS = ("sessions", "prs", "searches", "dau", "wau", "mau", "active-users")
KINDS = {
    "metrics/sessions": "sessions",
    "metrics/prs": "prs",
    "metrics/searches": "searches",
    "metrics/dau": "active_users",
    "metrics/wau": "active_users",
    "metrics/mau": "active_users",
    "metrics/active-users": "active_users",
    "consumption/daily": "consumption",
}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


TOKENS = {
    TOKEN: TokenGrant(None),
    "cog_beta_only": TokenGrant(frozenset({"org-beta"}), service_user_id="service-user-b"),
    "cog_no_metrics": TokenGrant(None, can_view_metrics=False),
    **{
        f"cog_no_{kind}": TokenGrant(None, denied=frozenset({kind}))
        for kind in ("sessions", "prs", "searches", "active_users", "consumption",
                     "organizations")
    },
}  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 40 * DAY + 5 * HOUR)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    data = SyntheticData(seed=5, users_per_org=30, sessions_per_hour=1.5)
    with Simulator(data=data, tokens=TOKENS, clock=clock) as s:
        yield s


def call(
    client: httpx.Client, what: str, after: Any = None, before: Any = None,
    *, org: str = "org-alpha", **params: Any,
) -> httpx.Response:  # fmt: skip
    if after is not None:
        params["time_after"] = after
    if before is not None:
        params["time_before"] = before
    return client.get(ORG.format(org, what), params=params)


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def active_recount(
    data: SyntheticData, start: int, end: int, min_sessions: int = 1, min_searches: int = 1
) -> int:
    """Distinct users of org-alpha active in [start, end), from the raw streams."""
    if min_sessions == 0 or min_searches == 0:
        return data.users_per_org
    sessions = Counter(s.user_id for s in data.sessions("org-alpha", start, end))
    searches = Counter(s.user_id for s in data.searches("org-alpha", start, end))
    return len(
        {u for u, n in sessions.items() if n >= min_sessions}
        | {u for u, n in searches.items() if n >= min_searches}
    )


# -- PRs ------------------------------------------------------------------------------------


def test_prs_are_derived_from_the_sessions(sim: Simulator, client: httpx.Client) -> None:
    now = sim.now()
    sessions = list(sim.data.sessions("org-alpha", T0, T0 + 7 * DAY))
    prs = list(sim.data.prs("org-alpha", T0, T0 + 7 * DAY))
    keyed = Counter((s.created_at, s.user_id, s.service_user_id, s.playbook_id, s.merged_at)
                    for s in sessions)  # fmt: skip
    pr_keys = Counter((p.created_at, p.user_id, p.service_user_id, p.playbook_id, p.merged_at)
                      for p in prs)  # fmt: skip
    assert not pr_keys - keyed  # every PR is a session's
    merged_sessions = Counter(k for k in keyed.elements() if k[4] is not None)
    assert not merged_sessions - pr_keys  # every session with merged_at has a PR
    assert 0.75 * len(sessions) < len(prs) < 0.97 * len(sessions)  # most sessions have one
    assert all(p.merged_at is None or p.closed_at is None for p in prs)

    states = Counter(
        "merged" if p.merged_at is not None and p.merged_at <= now
        else "closed" if p.closed_at is not None and p.closed_at <= now
        else "open"
        for p in prs
    )  # fmt: skip
    body = ok(call(client, "metrics/prs", T0, T0 + 7 * DAY))
    assert body == sim.truth_prs("org-alpha", T0, T0 + 7 * DAY)
    assert body["prs_created_count"] == len(prs)
    assert body["prs_opened_count"] == states["open"] > 0
    assert body["prs_closed_count"] == states["closed"] > 0
    assert body["prs_merged_count"] == states["merged"] > 0
    assert body["prs_created_count"] == sum(body[k] for k in PR_KEYS[1:])
    assert all(body[k] == 0 for k in body if k.startswith("prs_taken_over"))
    # coherent with the sessions endpoint: one PR per merged session
    sessions_body = ok(call(client, "metrics/sessions", T0, T0 + 7 * DAY))
    assert body["prs_merged_count"] == sessions_body["sessions_with_merged_prs_count"]


@pytest.mark.parametrize(
    "filters",
    [
        {"user_ids": ["user-1", "user-3"]},
        {"service_user_ids": ["svc-2"]},
        {"user_ids": ["user-4"], "service_user_ids": ["svc-1"]},
        {"playbook_id": "playbook-2"},
    ],
)
def test_pr_filters(sim: Simulator, client: httpx.Client, filters: dict[str, Any]) -> None:
    users = set(filters.get("user_ids", ()))
    svcs = set(filters.get("service_user_ids", ()))
    playbook = filters.get("playbook_id")
    now = sim.now()
    kept = [
        p for p in sim.data.prs("org-alpha", T0, T0 + 7 * DAY)
        if ((not users and not svcs) or p.user_id in users or p.service_user_id in svcs)
        and (playbook is None or p.playbook_id == playbook)
    ]  # fmt: skip
    body = ok(call(client, "metrics/prs", T0, T0 + 7 * DAY, **filters))
    assert body == sim.truth_prs("org-alpha", T0, T0 + 7 * DAY, **filters)
    assert 0 < body["prs_created_count"] == len(kept)
    assert body["prs_merged_count"] == sum(p.state(now) == "merged" for p in kept)
    sessions_body = ok(call(client, "metrics/sessions", T0, T0 + 7 * DAY, **filters))
    assert body["prs_merged_count"] == sessions_body["sessions_with_merged_prs_count"]


def test_prs_and_searches_of_adjacent_windows_add_up(client: httpx.Client) -> None:
    day = ok(call(client, "metrics/prs", T0, T0 + DAY))
    hours = [ok(call(client, "metrics/prs", T0 + h * HOUR, T0 + (h + 1) * HOUR))
             for h in range(24)]  # fmt: skip
    for key in PR_KEYS:
        assert sum(h[key] for h in hours) == day[key]
    assert day["prs_created_count"] > 0

    week = ok(call(client, "metrics/searches", T0, T0 + 7 * DAY))["searches_created_count"]
    cut = T0 + 3 * DAY + 7 * HOUR + 13  # not aligned
    first = ok(call(client, "metrics/searches", T0, cut))["searches_created_count"]
    rest = ok(call(client, "metrics/searches", cut, T0 + 7 * DAY))["searches_created_count"]
    assert first + rest == week > 0


def test_closed_pr_windows_change_as_the_clock_advances(
    sim: Simulator, clock: Clock, client: httpx.Client
) -> None:
    clock.now = T0 + DAY
    before = ok(call(client, "metrics/prs", T0, T0 + DAY))
    clock.now = T0 + 8 * DAY
    after = ok(call(client, "metrics/prs", T0, T0 + DAY))
    assert after["prs_created_count"] == before["prs_created_count"]  # same sessions
    assert after["prs_merged_count"] > before["prs_merged_count"]  # late merges
    assert after["prs_closed_count"] > before["prs_closed_count"]
    assert after["prs_opened_count"] < before["prs_opened_count"]
    # sessions after now do not exist, so neither do their PRs
    clock.now = T0 + 12 * HOUR
    half = ok(call(client, "metrics/prs", T0, T0 + DAY))
    assert half == ok(call(client, "metrics/prs", T0, T0 + 12 * HOUR))
    assert half["prs_created_count"] < before["prs_created_count"]


# -- searches -------------------------------------------------------------------------------


def test_searches_are_their_own_deterministic_stream(
    sim: Simulator, clock: Clock, client: httpx.Client
) -> None:
    searches = list(sim.data.searches("org-alpha", T0, T0 + 7 * DAY))
    again = SyntheticData(seed=5, users_per_org=30, sessions_per_hour=1.5)
    assert searches == list(again.searches("org-alpha", T0, T0 + 7 * DAY))
    assert searches != list(again.searches("org-beta", T0, T0 + 7 * DAY))
    assert {s.user_id for s in searches} <= set(sim.data.users)
    assert len({s.user_id for s in searches}) > 20
    assert [s.created_at for s in searches] == sorted(s.created_at for s in searches)
    body = ok(call(client, "metrics/searches", T0, T0 + 7 * DAY, user_ids=["user-1"]))
    assert body == {"searches_created_count": len(searches)}  # no user filters here
    assert body == sim.truth_searches("org-alpha", T0, T0 + 7 * DAY)
    sessions = ok(call(client, "metrics/sessions", T0, T0 + 7 * DAY))
    assert body["searches_created_count"] != sessions["sessions_created_count"]
    clock.now = T0 + 2 * DAY + 1
    in_two_days = sum(1 for s in searches if s.created_at <= T0 + 2 * DAY)
    assert ok(call(client, "metrics/searches", T0, T0 + 7 * DAY)) == {
        "searches_created_count": in_two_days
    }


# -- active users ---------------------------------------------------------------------------


@pytest.mark.parametrize(("min_sessions", "min_searches"), [(1, 1), (3, 2), (2, 100), (0, 5)])
def test_dau_matches_a_recount(
    sim: Simulator, client: httpx.Client, min_sessions: int, min_searches: int
) -> None:
    after, before = T0 + 5 * HOUR, T0 + 6 * DAY + 2 * HOUR  # not aligned: whole days anyway
    params: dict[str, Any] = {"min_sessions": min_sessions, "min_searches": min_searches}
    body = ok(call(client, "metrics/dau", after, before, **params))
    assert body == sim.truth_active_users("org-alpha", "day", after, before, **params)
    assert [(b["start_time"], b["end_time"]) for b in body] == [
        (T0 + d * DAY, T0 + (d + 1) * DAY) for d in range(7)
    ]
    counts = [b["active_users"] for b in body]
    assert counts == [active_recount(sim.data, T0 + d * DAY, T0 + (d + 1) * DAY, **params)
                      for d in range(7)]  # fmt: skip
    if min_sessions == 0:
        assert counts == [30] * 7  # a threshold of 0: every user of the pool
    else:
        assert len(set(counts)) > 1
        assert max(counts) < 30


def test_wau_and_mau_buckets(sim: Simulator, client: httpx.Client) -> None:
    after, before = T0 - 20 * DAY + 7, T0 + 30 * DAY  # 2024-11-15 .. 2025-01-04
    wau = ok(call(client, "metrics/wau", after, before))
    mau = ok(call(client, "metrics/mau", after, before))
    assert wau == sim.truth_active_users("org-alpha", "week", after, before)
    assert mau == sim.truth_active_users("org-alpha", "month", after, before)
    for items in (wau, mau):
        assert items[0]["start_time"] <= after < items[0]["end_time"]
        assert items[-1]["start_time"] < before <= items[-1]["end_time"]
        assert all(a["end_time"] == b["start_time"] for a, b in itertools.pairwise(items))
    for w in wau:
        start = datetime.fromtimestamp(w["start_time"], UTC)
        assert (start.weekday(), start.hour, start.minute, start.second) == (0, 0, 0, 0)
        assert w["end_time"] - w["start_time"] == 7 * DAY
        assert w["active_users"] == active_recount(sim.data, w["start_time"], w["end_time"])
    assert [datetime.fromtimestamp(m["start_time"], UTC).strftime("%Y-%m-%d") for m in mau] == [
        "2024-11-01", "2024-12-01", "2025-01-01"
    ]  # fmt: skip
    assert mau[-1]["end_time"] == int(datetime(2025, 2, 1, tzinfo=UTC).timestamp())
    for m in mau:
        assert m["active_users"] == active_recount(sim.data, m["start_time"], m["end_time"])

    # distinct counts: a week's DAUs do not add up to its WAU, nor a month's to its MAU
    week = next(w for w in wau if w["start_time"] == MONDAY)
    dau = ok(call(client, "metrics/dau", MONDAY, MONDAY + 7 * DAY))
    assert len(dau) == 7
    assert (
        sum(d["active_users"] for d in dau)
        > week["active_users"]
        >= max(d["active_users"] for d in dau)
    )
    assert week["active_users"] == active_recount(sim.data, MONDAY, MONDAY + 7 * DAY)
    strict = ok(call(client, "metrics/wau", MONDAY, MONDAY + 1, min_sessions=4, min_searches=3))
    assert len(strict) == 1
    assert strict[0]["active_users"] == active_recount(sim.data, MONDAY, MONDAY + 7 * DAY, 4, 3)
    assert strict[0]["active_users"] < week["active_users"]


def test_active_users_over_the_window(sim: Simulator, client: httpx.Client) -> None:
    after, before = T0 + 3 * HOUR, T0 + 2 * DAY + 5 * HOUR
    body = ok(call(client, "metrics/active-users", after, before, min_sessions=2))
    assert body == {"start_time": after, "end_time": before,
                    "active_users": active_recount(sim.data, after, before, 2, 1)}  # fmt: skip
    assert body == sim.truth_active_users_window("org-alpha", after, before, min_sessions=2)
    everybody = ok(call(client, "metrics/active-users", after, before, min_searches=0))
    assert everybody["active_users"] == 30


def test_buckets_stop_at_now(sim: Simulator, clock: Clock, client: httpx.Client) -> None:
    clock.now = T0 + 2 * DAY + 9 * HOUR
    dau = ok(call(client, "metrics/dau", T0, T0 + 5 * DAY))
    assert [d["start_time"] for d in dau] == [T0, T0 + DAY, T0 + 2 * DAY]  # no future days
    assert dau[-1]["end_time"] == T0 + 3 * DAY  # still the whole bucket
    assert dau[-1]["active_users"] == active_recount(
        sim.data, T0 + 2 * DAY, T0 + 2 * DAY + 9 * HOUR
    )
    clock.now = T0 + 2 * DAY  # a bucket starting at now is omitted
    assert len(ok(call(client, "metrics/dau", T0, T0 + 5 * DAY))) == 2
    assert ok(call(client, "metrics/dau", T0 + 3 * DAY, T0 + 5 * DAY, min_sessions=0)) == []


# -- consumption ----------------------------------------------------------------------------


def check_consumption(sim: Simulator, body: dict[str, Any], now: int) -> None:
    entries = body["consumption_by_date"]
    assert entries
    assert body["total_acus"] == pytest.approx(sum(e["acus"] for e in entries), abs=1e-6)
    for prev, entry in itertools.pairwise(entries):
        assert entry["date"] - prev["date"] == DAY
    for e in entries:
        start = datetime.fromtimestamp(e["date"], UTC)
        assert (start.hour, start.minute, start.second) == (8, 0, 0)
        assert e["date"] < now
        products = e["acus_by_product"]
        assert set(products) == {"devin", "cascade", "terminal", "review"}
        devin = sum(s.acus for s in sim.data.sessions("org-alpha", e["date"],
                                                       min(e["date"] + DAY, now)))  # fmt: skip
        assert products["devin"] == pytest.approx(devin, abs=0.006)
        assert e["acus"] == pytest.approx(sum(products.values()), abs=0.006)
        assert all(round(v, 2) == v for v in (*products.values(), e["acus"]))
        assert 0.1 * devin - 0.01 <= products["cascade"] <= 0.3 * devin + 0.01
        assert products["terminal"] <= 0.05 * devin + 0.01
        assert products["review"] <= 0.08 * devin + 0.01


def test_consumption_matches_the_sessions(sim: Simulator, client: httpx.Client) -> None:
    after, before = T0 + 3 * HOUR, T0 + 10 * DAY + HOUR  # not aligned to 08:00 UTC
    body = ok(call(client, "consumption/daily", after, before))
    assert body == sim.truth_consumption("org-alpha", after, before)
    dates = [e["date"] for e in body["consumption_by_date"]]
    assert dates[0] == T0 - 16 * HOUR  # the billing day holding time_after: Dec 4, 08:00 UTC
    assert dates[-1] == T0 + 9 * DAY + 8 * HOUR  # the one holding time_before - 1
    assert len(dates) == 11
    check_consumption(sim, body, sim.now())
    assert body["total_acus"] > 100


def test_consumption_default_window(sim: Simulator, clock: Clock, client: httpx.Client) -> None:
    now = sim.now()
    body = ok(call(client, "consumption/daily"))
    dates = [e["date"] for e in body["consumption_by_date"]]
    assert len(dates) == 30
    assert dates[-1] == billing_day_start(now) <= now < dates[-1] + DAY
    assert body == sim.truth_consumption("org-alpha", None, None)
    check_consumption(sim, body, now)
    only_before = ok(call(client, "consumption/daily", before=T0 + DAY))  # 30 days up to it
    assert [e["date"] for e in only_before["consumption_by_date"]] == [
        T0 + 8 * HOUR - d * DAY for d in range(29, -1, -1)
    ]
    only_after = ok(call(client, "consumption/daily", after=now - 3 * DAY))  # up to now
    assert len(only_after["consumption_by_date"]) == 4
    assert only_after["consumption_by_date"][-1] == body["consumption_by_date"][-1]


def test_consumption_of_the_current_day_grows(
    sim: Simulator, clock: Clock, client: httpx.Client
) -> None:
    clock.now = T0 + 11 * HOUR  # 3 hours into the billing day starting at T0 + 8h
    early = ok(call(client, "consumption/daily", T0 - 2 * DAY, T0 + 2 * DAY))
    clock.now = T0 + 20 * HOUR
    later = ok(call(client, "consumption/daily", T0 - 2 * DAY, T0 + 2 * DAY))
    e, la = early["consumption_by_date"], later["consumption_by_date"]
    assert [x["date"] for x in e] == [x["date"] for x in la]
    assert e[-1]["date"] == T0 + 8 * HOUR
    assert e[:-1] == la[:-1]  # closed days do not change
    assert la[-1]["acus_by_product"]["devin"] > e[-1]["acus_by_product"]["devin"] > 0
    assert later["total_acus"] > early["total_acus"]
    check_consumption(sim, later, sim.now())


# -- organizations and /v3/self -------------------------------------------------------------


def walk(client: httpx.Client, first: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"first": first}
        if after is not None:
            params["after"] = after
        page = ok(client.get("/v3/enterprise/organizations", params=params))
        pages += 1
        items += page["items"]
        assert len(page["items"]) <= first
        if not page["has_next_page"]:
            assert page["end_cursor"] is None
            return items, pages
        after = page["end_cursor"]
        assert isinstance(after, str)


def test_organizations_pagination(make_sim: Callable[..., Simulator]) -> None:
    orgs = [f"org-{c}" for c in "edcba"]
    s = make_sim(orgs=orgs, org_names={"org-c": "Charlie"})
    with http(s.base_url) as c:
        one_by_one, pages = walk(c, 1)
        assert pages == 5
        everything, pages = walk(c, 200)
        assert pages == 1
        assert one_by_one == everything == s.listed_orgs()
        assert [o["org_id"] for o in everything] == sorted(orgs)
        assert everything[2]["name"] == "Charlie"
        assert everything[0]["name"] == "Org org-a"
        for o in everything:
            assert set(o) == {"org_id", "name", "created_at", "updated_at",
                              "max_cycle_acu_limit", "max_session_acu_limit"}  # fmt: skip
            assert o["max_cycle_acu_limit"] is None
            assert o["max_session_acu_limit"] is None
            assert 0 < o["created_at"] <= o["updated_at"] < T0
        default = ok(c.get("/v3/enterprise/organizations"))
        assert default == {"items": everything, "end_cursor": None, "has_next_page": False,
                           "total": 5}  # fmt: skip
        two = ok(c.get("/v3/enterprise/organizations", params={"first": 2}))
        assert two["has_next_page"] is True
        assert two["total"] == 5
        assert [o["org_id"] for o in two["items"]] == ["org-a", "org-b"]
        for bad in ({"first": 0}, {"first": 201}, {"first": "x"}, {"after": "garbage!"},
                    {"after": base64.b64encode(b"nope").decode()}):  # fmt: skip
            r = c.get("/v3/enterprise/organizations", params=bad)
            assert r.status_code == 422
            assert r.json()["detail"][0]["loc"] == ["query", next(iter(bad))]
    assert s.count(endpoint="organizations") == 5 + 1 + 1 + 1 + 5


def test_set_orgs_adds_and_removes(make_sim: Callable[..., Simulator]) -> None:
    clock = Clock(T0 + DAY)
    s = make_sim(orgs=("org-alpha", "org-beta"), clock=clock)
    with http(s.base_url) as c:
        assert call(c, "metrics/prs", T0, T0 + DAY, org="org-gamma").status_code == 404
        s.set_orgs(["org-alpha", "org-gamma"], names={"org-gamma": "Gamma"})
        assert s.orgs == frozenset({"org-alpha", "org-gamma"})
        items = ok(c.get("/v3/enterprise/organizations"))["items"]
        assert [(o["org_id"], o["name"]) for o in items] == [
            ("org-alpha", "Org org-alpha"), ("org-gamma", "Gamma")
        ]  # fmt: skip
        assert items[1]["created_at"] == items[1]["updated_at"] == T0 + DAY  # created now
        assert ok(call(c, "metrics/prs", T0, T0 + DAY, org="org-gamma"))["prs_created_count"] > 0
        for what in KINDS:
            r = call(c, what, T0, T0 + DAY, org="org-beta")
            assert "org-beta" in assert_problem(r, 404)["detail"]
        clock.now = T0 + 2 * DAY
        s.set_orgs(["org-alpha", "org-gamma"], names={"org-alpha": "Alpha"})
        alpha = ok(c.get("/v3/enterprise/organizations"))["items"][0]
        assert (alpha["name"], alpha["updated_at"]) == ("Alpha", T0 + 2 * DAY)
        assert alpha["created_at"] < T0
        with http(s.base_url, None) as admin:
            r = admin.post("/_sim/orgs", json={"orgs": ["org-delta"], "names": {"org-delta": "D"}})
            assert [o["org_id"] for o in r.json()["orgs"]] == ["org-delta"]
            assert admin.get("/_sim/orgs").json()["orgs"][0]["name"] == "D"
            assert admin.post("/_sim/orgs", json={"orgs": "org-x"}).status_code == 400
        assert call(c, "metrics/dau", T0, T0 + DAY).status_code == 404
        assert call(c, "metrics/dau", T0, T0 + DAY, org="org-delta").status_code == 200


def test_any_org_simulator_lists_the_named_orgs(make_sim: Callable[..., Simulator]) -> None:
    s = make_sim(orgs=None, org_names={"org-z": "Zed", "org-y": "Why"})
    with http(s.base_url) as c:
        page = ok(c.get("/v3/enterprise/organizations"))
        assert [(o["org_id"], o["name"]) for o in page["items"]] == [("org-y", "Why"),
                                                                      ("org-z", "Zed")]  # fmt: skip
        assert call(c, "metrics/searches", T0, T0 + DAY, org="org-anything").status_code == 200
    assert make_sim(orgs=None).listed_orgs() == []


def test_self(make_sim: Callable[..., Simulator]) -> None:
    tokens = {
        "cog_enterprise_secret": TokenGrant(None),
        "cog_one_org_secret": TokenGrant(frozenset({"org-beta"}), service_user_name="Bot"),
        "cog_two_orgs_secret": TokenGrant(frozenset({"org-alpha", "org-beta"}),
                                          denied=frozenset({"organizations", "sessions"})),
    }  # fmt: skip
    s = make_sim(tokens=tokens)
    bodies = {}
    for token in tokens:
        with http(s.base_url, token) as c:
            r = c.get("/v3/self")
            assert token not in r.text
            assert "secret" not in r.text
            bodies[token] = ok(r)
    assert bodies["cog_enterprise_secret"]["org_id"] is None
    assert bodies["cog_one_org_secret"]["org_id"] == "org-beta"
    assert bodies["cog_one_org_secret"]["service_user_name"] == "Bot"
    assert bodies["cog_two_orgs_secret"]["org_id"] is None
    for body in bodies.values():
        assert set(body) == {"principal_type", "service_user_id", "service_user_name", "org_id"}
        assert body["principal_type"] == "service_user"
        assert body["service_user_id"].startswith("service-user-")
    assert len({b["service_user_id"] for b in bodies.values()}) == 3
    for headers in ({}, {"Authorization": "Bearer cog_wrong"}):
        with http(s.base_url, None, **headers) as c:
            assert_problem(c.get("/v3/self"), 401)
    assert s.count(endpoint="self") == 5
    assert s.count(endpoint="self", status=401) == 2


# -- auth, validation, rate limit, faults, latency, records -----------------------------------


@pytest.mark.parametrize("what", list(KINDS))
def test_auth_of_org_endpoints(sim: Simulator, what: str) -> None:
    kind = KINDS[what]
    with http(sim.base_url, "cog_wrong") as c:
        assert_problem(call(c, what, T0, T0 + DAY, org="org-nope"), 401)  # before the org
    with http(sim.base_url) as c:
        assert (
            "org-nope" in assert_problem(call(c, what, T0, T0 + DAY, org="org-nope"), 404)["detail"]
        )
    permission = "ViewOrgMetrics"
    if kind == "consumption":
        permission = "ManageBilling / ViewOrgConsumption"
    with http(sim.base_url, "cog_beta_only") as c:
        body = assert_problem(call(c, what, "x", None), 403)
        assert permission in body["detail"]
        assert call(c, what, T0, T0 + DAY, org="org-beta").status_code == 200
    with http(sim.base_url, "cog_no_metrics") as c:
        r = call(c, what, T0, T0 + DAY)
        if kind == "consumption":  # governed by `denied` only
            assert r.status_code == 200
        else:
            assert "ViewOrgMetrics" in assert_problem(r, 403)["detail"]
    for denied in ("sessions", "prs", "searches", "active_users", "consumption"):
        with http(sim.base_url, f"cog_no_{denied}") as c:
            r = call(c, what, T0, T0 + DAY)
            if denied == kind:
                assert permission in assert_problem(r, 403)["detail"]
            else:
                assert r.status_code == 200
    assert sim.count(endpoint=kind, status=403) == (2 if kind == "consumption" else 3)


def test_organizations_permission(sim: Simulator) -> None:
    with http(sim.base_url, "cog_no_organizations") as c:
        body = assert_problem(c.get("/v3/enterprise/organizations"), 403)
        assert "ManageOrganizations" in body["detail"]
        assert ok(c.get("/v3/self"))["org_id"] is None  # /v3/self needs no permission
        assert call(c, "metrics/sessions", T0, T0 + DAY).status_code == 200
    with http(sim.base_url, "cog_wrong") as c:
        assert_problem(c.get("/v3/enterprise/organizations", params={"first": 0}), 401)
    with http(sim.base_url, "cog_no_metrics") as c:
        assert len(ok(c.get("/v3/enterprise/organizations"))["items"]) == 2
    with pytest.raises(ValueError, match="unknown endpoint kinds"):
        TokenGrant(None, denied=frozenset({"metrics"}))


@pytest.mark.parametrize("what", [w for w in KINDS if w != "consumption/daily"])
def test_validation(client: httpx.Client, what: str) -> None:
    r = call(client, what)
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["query", "time_after"],
                                                       ["query", "time_before"]]  # fmt: skip
    assert call(client, what, T0, "1.5").status_code == 422
    assert_problem(call(client, what, T0, T0), 400)
    assert_problem(call(client, what, T0 + 1, T0), 400)
    if what in ("metrics/sessions", "metrics/prs", "metrics/searches", "metrics/active-users"):
        # one aggregate per window: the range cap applies
        assert_problem(call(client, what, T0 - 100 * DAY - 1, T0), 400)
    else:
        # bucket lists: no cap (a year of months is one request)
        assert call(client, what, T0 - 365 * DAY, T0).status_code == 200
    assert call(client, what, T0 - 100 * DAY, T0).status_code == 200


@pytest.mark.parametrize("what", ["dau", "wau", "mau", "active-users"])
def test_validation_of_thresholds(client: httpx.Client, what: str) -> None:
    path = f"metrics/{what}"
    for bad in ({"min_sessions": -1}, {"min_searches": "two"}, {"min_sessions": "1.0"}):
        r = call(client, path, T0, T0 + DAY, **bad)
        assert r.status_code == 422
        name = next(iter(bad))
        assert [d["loc"] for d in r.json()["detail"]] == [["query", name]]
    r = call(client, path, min_sessions=-2)
    assert [d["loc"][1] for d in r.json()["detail"]] == ["time_after", "time_before",
                                                         "min_sessions"]  # fmt: skip
    assert r.json()["detail"][2]["type"] == "greater_than_equal"
    assert call(client, path, T0, T0 + DAY, min_sessions=0, min_searches=0).status_code == 200


def test_validation_of_consumption(client: httpx.Client) -> None:
    assert call(client, "consumption/daily", "soon").status_code == 422
    assert call(client, "consumption/daily", before="x").status_code == 422
    assert_problem(call(client, "consumption/daily", T0, T0), 400)
    assert call(client, "consumption/daily", T0 - 101 * DAY, T0).status_code == 200  # no cap
    assert_problem(call(client, "consumption/daily", after=T0 + 60 * DAY), 400)  # after now


def test_rate_limit_is_shared_by_every_endpoint(make_sim: Callable[..., Simulator]) -> None:
    s = make_sim(rate_limit=0.5, burst=3)
    with http(s.base_url) as c:
        assert call(c, "metrics/prs", T0, T0 + DAY).status_code == 200
        assert call(c, "metrics/dau", T0, T0 + DAY).status_code == 200
        assert c.get("/v3/self").status_code == 200
        for r in (call(c, "consumption/daily"), c.get("/v3/enterprise/organizations"),
                  call(c, "metrics/searches", T0, T0 + DAY)):  # fmt: skip
            assert_problem(r, 429)
            assert 1 <= int(r.headers["retry-after"]) <= 2
    assert s.count(status=429) == 3
    assert s.count(endpoint="consumption", status=429) == 1


def test_faults_apply_to_every_endpoint_of_an_org(sim: Simulator, client: httpx.Client) -> None:
    sim.inject(Fault("status", status=503, org_id="org-alpha", count=len(METRICS) + 1))
    assert c_statuses(client) == [503] * (len(METRICS) + 1)
    assert call(client, "metrics/prs", T0, T0 + DAY).status_code == 200
    # a fault naming an endpoint only applies there; faults never reach the org-less
    # endpoints unless they name them
    sim.inject(Fault("status", status=500, endpoint="searches"), Fault("html", count=-1))
    assert client.get("/v3/self").status_code == 200
    assert ok(client.get("/v3/enterprise/organizations"))["total"] == 2
    assert call(client, "metrics/dau", T0, T0 + DAY).headers["content-type"].startswith("text/html")
    assert call(client, "metrics/searches", T0, T0 + DAY).status_code == 500
    sim.clear_faults()
    sim.inject(Fault("reset", endpoint="self"), Fault("status", status=502,
                                                      endpoint="organizations"))  # fmt: skip
    with pytest.raises(httpx.TransportError):
        client.get("/v3/self")
    assert_problem(client.get("/v3/enterprise/organizations"), 502)
    assert sim.pending_faults == []
    with pytest.raises(ValueError, match="unknown endpoint"):
        Fault("status", endpoint="metrics")
    assert Fault.from_dict(Fault("slow", endpoint="prs").to_dict()).endpoint == "prs"


def c_statuses(client: httpx.Client) -> list[int]:
    return [call(client, f"metrics/{m}", T0, T0 + DAY).status_code for m in METRICS] + [
        call(client, "consumption/daily").status_code
    ]


def test_body_faults_on_list_bodies(sim: Simulator, client: httpx.Client) -> None:
    truth = sim.truth_active_users("org-alpha", "day", T0, T0 + 3 * DAY)
    sim.inject(
        Fault("body", patch={"active_users": None}, remove=("end_time",), endpoint="active_users"),
        Fault("truncate", endpoint="prs"),
    )
    with pytest.raises(httpx.RemoteProtocolError):
        call(client, "metrics/prs", T0, T0 + DAY)
    patched = ok(call(client, "metrics/dau", T0, T0 + 3 * DAY))
    assert patched == [{"start_time": t["start_time"], "active_users": None} for t in truth]
    assert ok(call(client, "metrics/dau", T0, T0 + 3 * DAY)) == truth
    assert [r.status for r in sim.requests] == [0, 200, 200]


def test_latency_applies_to_the_new_endpoints(make_sim: Callable[..., Simulator]) -> None:
    s = make_sim(latency=0.1)
    with http(s.base_url) as c:
        for request in (lambda: call(c, "metrics/mau", T0, T0 + DAY), lambda: c.get("/v3/self")):
            started = time.monotonic()
            assert request().status_code == 200
            assert time.monotonic() - started >= 0.1


def test_requests_are_recorded_with_their_endpoint(sim: Simulator, client: httpx.Client) -> None:
    call(client, "metrics/prs", T0, T0 + DAY, user_ids=["user-2"])
    call(client, "metrics/wau", T0, T0 + DAY)
    call(client, "metrics/active-users", T0, T0 + DAY)
    call(client, "consumption/daily")
    client.get("/v3/self")
    client.get("/v3/enterprise/organizations")
    client.get("/v3/organizations/org-alpha/metrics/usage")
    client.post("/v3/organizations/org-alpha/metrics/dau")
    assert [r.endpoint for r in sim.requests] == [
        "prs", "active_users", "active_users", "consumption", "self", "organizations",
        "unknown", "active_users",
    ]  # fmt: skip
    assert [r.status for r in sim.requests] == [200] * 6 + [404, 405]
    assert sim.count() == 8
    assert sim.count(endpoint="active_users") == 3
    assert sim.count(endpoint="active_users", status=200) == 2
    assert sim.count(org_id="org-alpha", endpoint="prs") == 1
    first = sim.requests[0]
    assert (first.org_id, first.time_after, first.user_ids) == ("org-alpha", T0, ("user-2",))
    assert first.to_dict()["endpoint"] == "prs"
    assert sim.requests[3].time_after is None  # consumption without bounds
    legacy = RequestRecord("org-a", 1, 2, (), (), None, 200, 0.0)
    assert legacy.endpoint == "sessions"


def test_admin_truth_of_every_endpoint(sim: Simulator, client: httpx.Client) -> None:
    base: dict[str, Any] = {"org_id": "org-alpha", "time_after": T0, "time_before": T0 + 2 * DAY}
    with http(sim.base_url, None) as admin:
        for endpoint, what in [("prs", "metrics/prs"), ("searches", "metrics/searches"),
                               ("dau", "metrics/dau"), ("mau", "metrics/mau"),
                               ("active-users", "metrics/active-users"),
                               ("consumption", "consumption/daily")]:  # fmt: skip
            truth = admin.get("/_sim/truth", params={**base, "endpoint": endpoint}).json()
            assert truth == ok(call(client, what, T0, T0 + 2 * DAY))
        wau = admin.get("/_sim/truth", params={**base, "endpoint": "wau", "min_sessions": 3})
        assert wau.json() == ok(call(client, "metrics/wau", T0, T0 + 2 * DAY, min_sessions=3))
        default = admin.get("/_sim/truth", params={"org_id": "org-alpha",
                                                   "endpoint": "consumption"})  # fmt: skip
        assert default.json() == ok(call(client, "consumption/daily"))
        assert admin.get("/_sim/truth", params={**base, "endpoint": "x"}).status_code == 400
    assert sim.count() == 8  # admin calls are not recorded


def test_serve_is_still_importable_from_the_server_module() -> None:
    from collector.sim import serve, server
    from collector.sim.launch import ENDPOINTS_BANNER

    assert server.serve is serve
    assert "/v3/self" in ENDPOINTS_BANNER
    assert json.dumps(ENDPOINTS_BANNER)  # plain text
