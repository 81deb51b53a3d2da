"""`collector check`: each token and each org's sources tried once against a real simulator,
over HTTP; what works, what fails and the fix, with no token in any output and no database."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from collector.calendars import BILLING_DAYS, DAYS
from collector.check import CheckResult, last_closed, run_check, whole_org_targets
from collector.config import parse_config
from collector.sim import Fault, Simulator, TokenGrant
from collector.sources import BILLING_PERMISSION, FAMILIES, METRICS_PERMISSION
from collector.targets import HOURS
from collector.windows import Window
from tests.helpers import OTHER_TOKEN, TOKEN, clean_env, invoke

#: A third token: it may read every org's metrics, but not their ACU consumption.
NO_BILLING_TOKEN = "cog_no_billing_secret_token_9d3e"
BAD_TOKEN = "cog_revoked_secret_token_00aa"
ALL_FAMILIES = tuple(FAMILIES)  # sessions, prs, searches, active_users, consumption
TOKENS = (TOKEN, OTHER_TOKEN, NO_BILLING_TOKEN, BAD_TOKEN)


@pytest.fixture
def check_sim() -> Iterator[Simulator]:
    """A simulator on the real clock knowing org-alpha and org-beta: TOKEN reads everything,
    OTHER_TOKEN is org-alpha's own service user, NO_BILLING_TOKEN lacks ManageBilling."""
    with Simulator(
        orgs=("org-alpha", "org-beta"),
        tokens={
            TOKEN: TokenGrant(None, service_user_name="metrics-bot", service_user_id="su-1"),
            OTHER_TOKEN: TokenGrant(frozenset({"org-alpha"}), service_user_name="alpha-bot"),
            NO_BILLING_TOKEN: TokenGrant(None, denied=frozenset({"consumption"})),
        },
    ) as sim:
        yield sim


def write_config(
    folder: Path, base_url: str, orgs: str = "", sources: tuple[str, ...] = ALL_FAMILIES
) -> Path:
    """A configuration file in `folder` whose database would be `folder`/c.db (the check
    must never create it); `orgs` is the [[orgs]] text (default: org-alpha and org-beta)."""
    path = folder / "collector.toml"
    enabled = ", ".join(f'"{s}"' for s in sources)
    path.write_text(
        f'[database]\nurl = "sqlite:///{folder / "c.db"}"\n'
        f'[api]\nbase_url = "{base_url}"\nrate_limit = 100\n'
        "backoff_base = 0.01\nbackoff_max = 0.05\nconnect_timeout = 2\ntimeout = 5\n"
        f"[sources]\nenabled = [{enabled}]\n"
        + (orgs or '[[orgs]]\nid = "org-alpha"\n[[orgs]]\nid = "org-beta"\n')
    )
    return path


def run(path: Path, *args: str, **env: str) -> Result:
    return invoke(["--config", str(path), "check", *args], env=clean_env(**env))


def table(result: Result) -> dict[tuple[str, str], list[str]]:
    """The check lines of a table: a source's by (org, source) as [flag, token, detail],
    a token's by ("token", its variable) as [flag, org column, detail]."""
    found: dict[tuple[str, str], list[str]] = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 4)
        if parts and parts[0] in ("ok", "FAIL"):
            flag, token, org, source, rest = parts
            key, value = ((source, token), [flag, org, rest]) if source == "token" else (
                (org, source), [flag, token, rest])
            assert key not in found, line
            found[key] = value
    return found


def no_token_in(result: Result) -> None:
    for token in TOKENS:
        assert token not in result.output
        assert token not in result.stdout


def source_requests(sim: Simulator) -> dict[tuple[str | None, str], int]:
    counts: dict[tuple[str | None, str], int] = {}
    for r in sim.requests:
        counts[(r.org_id, r.endpoint)] = counts.get((r.org_id, r.endpoint), 0) + 1
    return counts


# -- everything works ---------------------------------------------------------------------------


def test_all_ok_one_request_per_org_and_source_and_one_self_per_token(
    check_sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, check_sim.base_url)
    before = time.time()
    result = run(path, DEVIN_API_TOKEN=TOKEN)

    assert result.exit_code == 0, result.output
    lines = table(result)
    assert lines[("token", "$DEVIN_API_TOKEN")] == [
        "ok", "-",
        'service user "metrics-bot" (service_user_id su-1), of no single org; '
        "used by org-alpha, org-beta",
    ]
    for org in ("org-alpha", "org-beta"):
        for family in ALL_FAMILIES:
            flag, token, detail = lines[(org, family)]
            assert (flag, token) == ("ok", "$DEVIN_API_TOKEN")
            assert detail.startswith("read ")
    assert len(lines) == 1 + 2 * len(ALL_FAMILIES)
    assert "11 of 11 check(s) passed" in result.stdout
    assert "note:" not in result.stdout  # no org has segments

    # exactly one request per (org, family), one /v3/self, all answered 200
    kinds = {"sessions", "prs", "searches", "active_users", "consumption"}
    expected: dict[tuple[str | None, str], int] = {(None, "self"): 1}
    expected.update({(org, kind): 1 for org in ("org-alpha", "org-beta") for kind in kinds})
    assert source_requests(check_sim) == expected
    assert {r.status for r in check_sim.requests} == {200}
    # each over the last closed window (or bucket) of its source
    hour = last_closed(HOURS, before)
    by_kind = {r.endpoint: r for r in check_sim.requests if r.org_id == "org-alpha"}
    assert (by_kind["sessions"].time_after, by_kind["sessions"].time_before) == (
        hour.start, hour.end)
    assert hour.end <= before
    day = last_closed(DAYS, before)
    assert (by_kind["active_users"].time_after, by_kind["active_users"].time_before) == (
        day.start, day.end)
    billing = last_closed(BILLING_DAYS, before)
    assert (by_kind["consumption"].time_after, by_kind["consumption"].time_before) == (
        billing.start, billing.end)

    assert not (tmp_path / "c.db").exists()  # nothing written, the database never opened
    no_token_in(result)


def test_tokens_are_checked_once_each_and_name_their_own_org(
    check_sim: Simulator, tmp_path: Path
) -> None:
    orgs = ('[[orgs]]\nid = "org-alpha"\ntoken_env = "ALPHA_TOKEN"\n'
            '[[orgs]]\nid = "org-beta"\n')
    path = write_config(tmp_path, check_sim.base_url, orgs, sources=("sessions",))
    result = run(path, DEVIN_API_TOKEN=TOKEN, ALPHA_TOKEN=OTHER_TOKEN)

    assert result.exit_code == 0, result.output
    lines = table(result)
    assert lines[("token", "$ALPHA_TOKEN")][:2] == ["ok", "org-alpha"]
    assert lines[("token", "$ALPHA_TOKEN")][2].startswith('service user "alpha-bot"')
    assert lines[("token", "$ALPHA_TOKEN")][2].endswith(", org org-alpha; used by org-alpha")
    assert lines[("token", "$DEVIN_API_TOKEN")][:2] == ["ok", "-"]
    assert lines[("org-alpha", "sessions")][:2] == ["ok", "$ALPHA_TOKEN"]
    assert lines[("org-beta", "sessions")][:2] == ["ok", "$DEVIN_API_TOKEN"]
    assert check_sim.count(endpoint="self") == 2
    assert check_sim.count(endpoint="sessions") == 2
    no_token_in(result)


# -- failures and their fixes ---------------------------------------------------------------------


def test_a_missing_permission_fails_that_source_only_naming_both_permission_names(
    check_sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, check_sim.base_url)
    result = run(path, DEVIN_API_TOKEN=NO_BILLING_TOKEN)

    assert result.exit_code == 1, result.output
    lines = table(result)
    for org in ("org-alpha", "org-beta"):
        flag, token, detail = lines[(org, "consumption")]
        assert (flag, token) == ("FAIL", "$DEVIN_API_TOKEN")
        assert detail == (
            f"403: the token may not read consumption of {org}. Fix: give the service user "
            f"of $DEVIN_API_TOKEN the {BILLING_PERMISSION} permission in org {org}"
        )
        assert "ManageBilling" in detail
        assert "ViewOrgConsumption" in detail
        for family in ("sessions", "prs", "searches", "active_users"):
            assert lines[(org, family)][0] == "ok"
    assert lines[("token", "$DEVIN_API_TOKEN")][0] == "ok"
    assert "9 of 11 check(s) passed" in result.stdout
    assert check_sim.count(endpoint="consumption", status=403) == 2
    assert len(check_sim.requests) == 11
    no_token_in(result)


def test_metrics_permission_named_when_metrics_are_refused(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None, can_view_metrics=False)}
                   ) as sim:
        path = write_config(tmp_path, sim.base_url, '[[orgs]]\nid = "org-alpha"\n',
                            sources=("sessions", "consumption"))
        result = run(path, DEVIN_API_TOKEN=TOKEN)
    assert result.exit_code == 1
    lines = table(result)
    assert lines[("org-alpha", "sessions")][0] == "FAIL"
    assert METRICS_PERMISSION in lines[("org-alpha", "sessions")][2]
    assert lines[("org-alpha", "consumption")][0] == "ok"
    no_token_in(result)


def test_a_rejected_token_says_to_create_a_new_one_and_tries_nothing_else(
    check_sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(tmp_path, check_sim.base_url)
    result = run(path, DEVIN_API_TOKEN=BAD_TOKEN)

    assert result.exit_code == 1, result.output
    lines = table(result)
    fix = ("Fix: the token in DEVIN_API_TOKEN is invalid or expired: create a new "
           "service-user token in Devin and export it in DEVIN_API_TOKEN")
    assert lines[("token", "$DEVIN_API_TOKEN")] == [
        "FAIL", "-", f"401: the API rejected the token. {fix}"]
    for org in ("org-alpha", "org-beta"):
        for family in ALL_FAMILIES:
            assert lines[(org, family)] == [
                "FAIL", "$DEVIN_API_TOKEN", f"not tried: 401: the API rejected the token. {fix}"]
    assert source_requests(check_sim) == {(None, "self"): 1}
    assert check_sim.count(endpoint="self", status=401) == 1
    assert "0 of 11 check(s) passed" in result.stdout
    no_token_in(result)


def test_a_missing_variable_names_it_and_sends_nothing(
    check_sim: Simulator, tmp_path: Path
) -> None:
    orgs = ('[[orgs]]\nid = "org-alpha"\n'
            '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\n')
    path = write_config(tmp_path, check_sim.base_url, orgs, sources=("sessions", "prs"))
    result = run(path, DEVIN_API_TOKEN=TOKEN, BETA_TOKEN="")  # set, but empty

    assert result.exit_code == 1, result.output
    lines = table(result)
    fix = "Fix: export BETA_TOKEN=<a Devin service-user token (cog_...)>, then run the check again"
    assert lines[("token", "$BETA_TOKEN")] == [
        "FAIL", "-", f"$BETA_TOKEN is not set or empty (the token of org-beta). {fix}"]
    assert lines[("org-beta", "sessions")] == [
        "FAIL", "$BETA_TOKEN",
        f"not tried: $BETA_TOKEN is not set or empty (the token of org-beta). {fix}"]
    assert lines[("org-beta", "prs")][0] == "FAIL"
    assert lines[("org-alpha", "sessions")][:2] == ["ok", "$DEVIN_API_TOKEN"]
    assert lines[("org-alpha", "prs")][:2] == ["ok", "$DEVIN_API_TOKEN"]
    assert lines[("token", "$DEVIN_API_TOKEN")][0] == "ok"
    assert len(lines) == 2 + 4
    assert check_sim.count(org_id="org-beta") == 0
    assert source_requests(check_sim) == {
        (None, "self"): 1, ("org-alpha", "sessions"): 1, ("org-alpha", "prs"): 1}
    no_token_in(result)


def test_no_variable_at_all_makes_no_request(check_sim: Simulator, tmp_path: Path) -> None:
    path = write_config(tmp_path, check_sim.base_url, sources=("sessions",))
    result = run(path)
    assert result.exit_code == 1
    assert table(result)[("token", "$DEVIN_API_TOKEN")][0] == "FAIL"
    assert "export DEVIN_API_TOKEN=" in result.stdout
    assert check_sim.requests == []


def test_an_unknown_org_says_to_check_its_id_and_the_base_url(
    check_sim: Simulator, tmp_path: Path
) -> None:
    orgs = '[[orgs]]\nid = "org-alpha"\n[[orgs]]\nid = "org-nope"\n'
    path = write_config(tmp_path, check_sim.base_url, orgs, sources=("sessions", "searches"))
    result = run(path, DEVIN_API_TOKEN=TOKEN)

    assert result.exit_code == 1, result.output
    lines = table(result)
    for family in ("sessions", "searches"):
        assert lines[("org-nope", family)] == [
            "FAIL", "$DEVIN_API_TOKEN",
            "404: the API does not know organization org-nope. Fix: check the org id "
            "'org-nope' in the configuration (as Devin shows it, like org-abc123) and "
            f"[api].base_url ({check_sim.base_url})",
        ]
        assert lines[("org-alpha", family)][0] == "ok"
    assert check_sim.count(org_id="org-nope", status=404) == 2
    no_token_in(result)


def test_an_unreachable_api_says_to_check_the_base_url(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    path = write_config(tmp_path, base_url)
    started = time.monotonic()
    result = run(path, DEVIN_API_TOKEN=TOKEN)

    assert time.monotonic() - started < 10  # refused at once, retried once, not waited out
    assert result.exit_code == 1, result.output
    lines = table(result)
    flag, org, detail = lines[("token", "$DEVIN_API_TOKEN")]
    assert (flag, org) == ("FAIL", "-")
    assert detail.startswith(f"the API could not be reached at {base_url} (network error (")
    assert detail.endswith("Fix: check [api].base_url and the network (proxy, firewall, DNS) "
                           "from this machine")
    for org in ("org-alpha", "org-beta"):
        for family in ALL_FAMILIES:
            assert lines[(org, family)][0] == "FAIL"
            assert lines[(org, family)][2] == f"not tried: {detail}"
    assert not (tmp_path / "c.db").exists()
    no_token_in(result)


def test_a_transient_server_error_is_reported_with_its_message(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}) as sim:
        sim.inject(Fault("status", status=503, count=-1, endpoint="prs", detail="down"))
        path = write_config(tmp_path, sim.base_url, '[[orgs]]\nid = "org-alpha"\n',
                            sources=("sessions", "prs"))
        result = run(path, DEVIN_API_TOKEN=TOKEN)
        prs_requests = sim.count(endpoint="prs")
    assert result.exit_code == 1
    lines = table(result)
    assert lines[("org-alpha", "prs")] == [
        "FAIL", "$DEVIN_API_TOKEN", "the API failed with 503: down. Fix: probably transient: "
        "run the check again in a minute"]
    assert lines[("org-alpha", "sessions")][0] == "ok"
    assert prs_requests == 2  # a check retries once, no more
    no_token_in(result)


def test_self_refused_is_no_failure_and_self_rate_limited_is_retried(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}) as sim:
        sim.inject(Fault("status", status=429, retry_after="0", endpoint="self"),
                   Fault("status", status=403, endpoint="self", detail="no ReadAccountMeta"))
        path = write_config(tmp_path, sim.base_url, '[[orgs]]\nid = "org-alpha"\n',
                            sources=("sessions",))
        result = run(path, DEVIN_API_TOKEN=TOKEN)
        statuses = [(r.endpoint, r.status) for r in sim.requests]
    assert result.exit_code == 0, result.output
    assert statuses == [("self", 429), ("self", 403), ("sessions", 200)]
    assert table(result)[("token", "$DEVIN_API_TOKEN")] == [
        "ok", "-",
        "identity not shown: the API will not say who the token is (403: no ReadAccountMeta); "
        "some pages say GET /v3/self needs the ReadAccountMeta permission; used by org-alpha",
    ]
    no_token_in(result)


# -- notes, JSON, exit codes ----------------------------------------------------------------------


def test_orgs_with_segments_get_a_note_on_where_segments_apply(
    check_sim: Simulator, tmp_path: Path
) -> None:
    orgs = ('[[orgs]]\nid = "org-alpha"\n'
            '[[orgs.segments]]\nname = "team-a"\nuser_ids = ["user-1"]\n'
            '[[orgs.segments]]\nname = "bots"\nservice_user_ids = ["su-9"]\n'
            '[[orgs]]\nid = "org-beta"\n')
    path = write_config(tmp_path, check_sim.base_url, orgs)
    result = run(path, DEVIN_API_TOKEN=TOKEN)

    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: org-alpha: segments (team-a, bots) apply only to sessions and prs; searches, "
        "active_users, consumption ignore them and read the whole org"
    ]
    # whole-org targets only: no request carries a segment's filters
    assert all(not r.user_ids and not r.service_user_ids for r in check_sim.requests)
    assert check_sim.count(org_id="org-alpha") == len(ALL_FAMILIES)


def test_json_lists_every_check_with_its_fix(check_sim: Simulator, tmp_path: Path) -> None:
    orgs = ('[[orgs]]\nid = "org-alpha"\nsources = ["sessions", "consumption"]\n'
            '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\nsources = ["sessions"]\n')
    path = write_config(tmp_path, check_sim.base_url, orgs)
    result = run(path, "--json", DEVIN_API_TOKEN=NO_BILLING_TOKEN)

    assert result.exit_code == 1, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    assert [(r["kind"], r["token_env"], r["org_id"], r["source"], r["ok"]) for r in rows] == [
        ("token", "$DEVIN_API_TOKEN", None, None, True),
        ("token", "$BETA_TOKEN", None, None, False),
        ("source", "$DEVIN_API_TOKEN", "org-alpha", "sessions", True),
        ("source", "$DEVIN_API_TOKEN", "org-alpha", "consumption", False),
        ("source", "$BETA_TOKEN", "org-beta", "sessions", False),
    ]
    assert all(set(r) == {"kind", "token_env", "org_id", "source", "ok", "detail", "fix"}
               for r in rows)
    assert all((r["fix"] is None) == r["ok"] for r in rows)
    assert rows[0]["detail"].startswith("service user ")
    assert rows[1]["fix"] == (
        "export BETA_TOKEN=<a Devin service-user token (cog_...)>, then run the check again")
    assert rows[3]["detail"] == "403: the token may not read consumption of org-alpha"
    assert rows[3]["fix"] == (
        f"give the service user of $DEVIN_API_TOKEN the {BILLING_PERMISSION} permission in "
        "org org-alpha")
    assert rows[2]["detail"].startswith("read sessions ")
    assert len(check_sim.requests) == 3  # self, alpha's sessions and consumption
    no_token_in(result)


def test_json_and_table_agree(check_sim: Simulator, tmp_path: Path) -> None:
    path = write_config(tmp_path, check_sim.base_url)
    as_table = table(run(path, DEVIN_API_TOKEN=NO_BILLING_TOKEN))
    rows = json.loads(run(path, "--json", DEVIN_API_TOKEN=NO_BILLING_TOKEN).stdout)
    assert len(rows) == len(as_table)
    for r in rows:
        if r["kind"] == "token":
            flag, org, detail = as_table[("token", r["token_env"])]
            assert org == (r["org_id"] or "-")
        else:
            flag, token, detail = as_table[(r["org_id"], r["source"])]
            assert token == r["token_env"]
        assert flag == ("ok" if r["ok"] else "FAIL")
        assert detail == (r["detail"] if r["ok"] else f"{r['detail']}. Fix: {r['fix']}")


def test_a_bad_configuration_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path / "missing.toml", DEVIN_API_TOKEN=TOKEN)
    assert result.exit_code == 2
    assert "configuration file not found" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[api]\nbase_url = "ftp://x"\n[[orgs]]\nid = "org-alpha"\n')
    result = run(bad, DEVIN_API_TOKEN=TOKEN)
    assert result.exit_code == 2
    assert "base_url" in result.output
    no_token_in(result)


# -- the logic without the command line ------------------------------------------------------------


def test_run_check_returns_results_without_click(check_sim: Simulator, tmp_path: Path) -> None:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'c.db'}"},
            "api": {"base_url": check_sim.base_url, "rate_limit": 100},
            "sources": {"enabled": ["sessions", "active_users"]},
            "orgs": [{"id": "org-alpha"}],
        },
        {},
        source="test",
    )
    now = time.time()
    report = run_check(config, {"DEVIN_API_TOKEN": TOKEN}, now=now)
    assert report.ok
    assert report.notes == []
    assert [(r.kind, r.org_id, r.source, r.ok) for r in report.results] == [
        ("token", None, None, True),
        ("source", "org-alpha", "sessions", True),
        ("source", "org-alpha", "active_users", True),
    ]
    hour = last_closed(whole_org_targets(config)[("org-alpha", "sessions")].calendar, now)
    assert report.results[1] == CheckResult(
        "source", "$DEVIN_API_TOKEN", "org-alpha", "sessions", True,
        f"read sessions {_fmt(hour)}")
    # active users: the daily definition's target, over yesterday (UTC)
    target = whole_org_targets(config)[("org-alpha", "active_users")]
    assert target.source.name == "active_users.day"
    assert target.segment == "min_sessions=1,min_searches=1"
    assert report.results[2].detail == f"read active_users.day {_fmt(last_closed(DAYS, now))}"
    assert not (tmp_path / "c.db").exists()
    assert all(TOKEN not in json.dumps(r.as_dict()) for r in report.results)


def _fmt(window: Window) -> str:
    from datetime import UTC, datetime

    def one(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")

    return f"{one(window.start)} .. {one(window.end)}"


def test_discovery_is_checked_with_its_own_token(check_sim: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, check_sim.base_url, sources=("sessions",), orgs=(
        '[discovery]\ntoken_env = "ENTERPRISE_TOKEN"\nexclude = ["org-beta"]\n'
        '[[orgs]]\nid = "org-alpha"\n'))
    ok = run(config, "--json", DEVIN_API_TOKEN=TOKEN, ENTERPRISE_TOKEN=TOKEN)
    assert ok.exit_code == 0, ok.output
    (found,) = [r for r in json.loads(ok.stdout) if r["source"] == "discovery"]
    assert found["ok"]
    assert found["detail"].startswith("2 organization(s) listed; 0 taken")  # alpha: [[orgs]]
    assert check_sim.count(endpoint="organizations") == 1
    denied = run(config, DEVIN_API_TOKEN=TOKEN, ENTERPRISE_TOKEN=NO_BILLING_TOKEN)
    assert denied.exit_code == 0, denied.output  # NO_BILLING_TOKEN may list the orgs
    check_sim.add_token("cog_no_listing_token_5e", TokenGrant(
        None, denied=frozenset({"organizations"})))
    refused = run(config, DEVIN_API_TOKEN=TOKEN, ENTERPRISE_TOKEN="cog_no_listing_token_5e")
    assert refused.exit_code == 1
    assert "ManageOrganizations" in table(refused)[("-", "discovery")][2]
    missing = run(config, DEVIN_API_TOKEN=TOKEN)
    assert missing.exit_code == 1
    assert "ENTERPRISE_TOKEN" in table(missing)[("-", "discovery")][2]
    for result in (ok, denied, refused, missing):
        assert all(t not in result.output for t in (*TOKENS, "cog_no_listing_token_5e"))
    assert not (tmp_path / "c.db").exists()
