"""What a new user meets first: short intervals, tokens put in the wrong place, a base URL
copied with /v3, the simulator against the example configuration, the demo at 80 columns."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from collector.sim import Simulator
from tests.helpers import COLLECTOR, ROOT, TOKEN, clean_env, config_file, invoke, run_on_terminal

EXAMPLE = ROOT / "config.example.toml"
SECRET = "cog_live_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def new_user_env(**extra: str) -> dict[str, str]:
    """A new user's shell: none of the collector's variables, and the terminal's own size
    (no COLUMNS or LINES), plus `extra`."""
    env = clean_env()
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return {**env, **extra}


# -- 8: short intervals work with the default jitter ------------------------------------------


def test_ten_second_interval_without_jitter_collects(live_sim: Simulator, tmp_path: Path) -> None:
    config = config_file(
        tmp_path / "c.toml", live_sim.base_url, f"sqlite:///{tmp_path / 'c.db'}",
        extra='[schedule]\ninterval = "10s"\n',
    )
    env = {"DEVIN_API_TOKEN": TOKEN}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    result = invoke(["--config", str(config), "collect"], env)
    assert result.exit_code == 0, result.output
    assert "collect: 2 of 2 window(s) collected" in result.output
    assert live_sim.count(status=200) == 2


def test_interval_under_a_second_exits_2_naming_the_interval(
    live_sim: Simulator, tmp_path: Path
) -> None:
    config = config_file(
        tmp_path / "c.toml", live_sim.base_url, f"sqlite:///{tmp_path / 'c.db'}",
        extra='[schedule]\ninterval = "500ms"\n',
    )
    result = invoke(["--config", str(config), "collect"], {"DEVIN_API_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert "schedule.interval: interval must be at least 1s" in result.output
    assert live_sim.count() == 0


def test_interval_longer_than_window_is_warned_on_stderr(tmp_path: Path) -> None:
    config = config_file(
        tmp_path / "c.toml", "https://api.devin.ai", f"sqlite:///{tmp_path / 'c.db'}",
        extra='[schedule]\ninterval = "2h"\n',
    )
    proc = subprocess.run(
        [COLLECTOR, "--config", str(config), "db", "upgrade"],
        capture_output=True, text=True, env=new_user_env(), timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines()
               if "[schedule].interval (2h) is longer than [windows].size (1h)" in line]
    assert "[warning]" in line


# -- 9: tokens never belong in the file, and are never echoed ---------------------------------


@pytest.mark.parametrize(
    ("extra", "org", "key", "says"),
    [
        (f'token_env = "{SECRET}"\n', "", "api.token_env", "put the variable's NAME here"),
        ("", f'token_env = "{SECRET}"\n', "orgs[0].token_env", "put the variable's NAME here"),
        (f'token = "{SECRET}"\n', "", "api.token", "only from the environment"),
        ("", f'token = "{SECRET}"\n', "orgs[0].token", "only from the environment"),
    ],
)
def test_token_in_the_config_is_refused_and_never_printed(
    live_sim: Simulator, tmp_path: Path, extra: str, org: str, key: str, says: str
) -> None:
    config = config_file(
        tmp_path / "c.toml", live_sim.base_url, f"sqlite:///{tmp_path / 'c.db'}",
        extra=extra, org=org,
    )
    proc = subprocess.run(
        [COLLECTOR, "--config", str(config), "collect"],
        capture_output=True, text=True, env=new_user_env(DEVIN_API_TOKEN=TOKEN), timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"  {key}: " in proc.stderr
    assert says in proc.stderr
    assert "token_env" in proc.stderr or "NAME" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET[4:20] not in proc.stdout + proc.stderr
    assert live_sim.count() == 0


# -- 12: a base URL copied with /v3 ------------------------------------------------------------


def test_base_url_ending_in_v3_still_reaches_the_org(live_sim: Simulator, tmp_path: Path) -> None:
    config = config_file(
        tmp_path / "c.toml", live_sim.base_url + "/v3/", f"sqlite:///{tmp_path / 'c.db'}"
    )
    env = {"DEVIN_API_TOKEN": TOKEN}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    result = invoke(["--config", str(config), "collect"], env)
    assert result.exit_code == 0, result.output
    assert "2 of 2 window(s) collected" in result.output
    assert "does not know this organization" not in result.output
    assert {r.org_id for r in live_sim.requests} == {"org-alpha"}
    assert live_sim.count(status=404) == 0


# -- 13: the simulator serves the configuration it is given -----------------------------------


class Served:
    def __init__(self, proc: subprocess.Popen[str], banner: str, pump: threading.Thread) -> None:
        self.proc = proc
        self.banner = banner
        self.pump = pump
        found = re.search(r"simulator listening on (http://\S+)", banner)
        self.url = found.group(1) if found else ""


def start_simulate(args: list[str], cwd: Path, env: dict[str, str]) -> Served:
    """Start `collector simulate` and read its banner (up to 30 s, never blocking longer)."""
    proc = subprocess.Popen(
        [COLLECTOR, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    banner: list[str] = []
    try:
        while not banner or not banner[-1].startswith("Synthetic data only"):
            banner.append(lines.get(timeout=30))
    except queue.Empty:
        stop(Served(proc, "", reader), kill=True)
        raise AssertionError(f"no complete banner: {''.join(banner)!r}") from None
    served = Served(proc, "".join(banner), reader)
    if not served.url:
        stop(served, kill=True)
        raise AssertionError(f"no URL in the banner: {served.banner!r}")
    return served


def stop(served: Served, *, kill: bool = False) -> None:
    proc = served.proc
    if kill:
        proc.kill()
    else:
        proc.terminate()
    proc.wait(timeout=10)
    served.pump.join(timeout=10)
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()


def test_simulate_serves_the_example_configs_org_and_says_how_to_use_it(tmp_path: Path) -> None:
    served = start_simulate(
        ["--config", str(EXAMPLE), "simulate", "--port", "0"], tmp_path, new_user_env()
    )
    try:
        banner = served.banner
        assert "serves orgs: org-abc123" in banner
        assert "accepts token: cog_sim_token" in banner
        assert f'base_url = "{served.url}"' in banner
        assert "export DEVIN_API_TOKEN=cog_sim_token" in banner
        # Configure -> Run, exactly as the banner says
        config = tmp_path / "collector.toml"
        config.write_text(
            EXAMPLE.read_text()
            .replace('base_url = "https://api.devin.ai"', f'base_url = "{served.url}"')
            .replace('url = "sqlite:///collector.db"', f'url = "sqlite:///{tmp_path / "c.db"}"')
        )
        env = new_user_env(DEVIN_API_TOKEN="cog_sim_token")
        for command in (["db", "upgrade"], ["collect"]):
            proc = subprocess.run(
                [COLLECTOR, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        # the open window and the one before, of every source: sessions and PRs for the org
        # and its segment (8), searches (2), active users by day, week and month (6) and
        # billing days of consumption (2)
        assert "collect: 18 of 18 window(s) collected" in proc.stdout
    finally:
        stop(served)


def test_simulate_without_configuration_knows_any_org(tmp_path: Path) -> None:
    served = start_simulate(["simulate", "--port", "0"], tmp_path, new_user_env())
    try:
        assert "serves orgs: any org id" in served.banner
        now = int(time.time()) // 3600 * 3600
        with httpx.Client(base_url=served.url, timeout=10) as http:
            answer = http.get(
                "/v3/organizations/org-whatever-42/metrics/sessions",
                params={"time_after": now - 3600, "time_before": now},
                headers={"Authorization": "Bearer cog_sim_token"},
            )
        assert answer.status_code == 200
        assert "sessions_created_count" in answer.json()
    finally:
        stop(served)


def test_simulate_with_org_flags_still_refuses_other_orgs(tmp_path: Path) -> None:
    served = start_simulate(
        ["simulate", "--port", "0", "--org", "org-one", "--token", TOKEN], tmp_path, new_user_env()
    )
    try:
        assert "serves orgs: org-one" in served.banner
        assert f"export DEVIN_API_TOKEN={TOKEN}" in served.banner
        now = int(time.time()) // 3600 * 3600
        with httpx.Client(base_url=served.url, timeout=10) as http:
            statuses = [
                http.get(
                    f"/v3/organizations/{org}/metrics/sessions",
                    params={"time_after": now - 3600, "time_before": now},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ).status_code
                for org in ("org-one", "org-two")
            ]
        assert statuses == [200, 404]
    finally:
        stop(served)


@pytest.mark.parametrize(
    ("discovery", "orgs", "expected", "exported"),
    [
        ("", "", {"org-alpha", "org-beta", "org-gamma"}, set()),
        ('include = ["org-prod-*", "Platform*"]\nexclude = ["*-beta"]\n', "", None, set()),
        ("", '[[orgs]]\nid = "org-abc123"\n', {"org-abc123"}, {"DEVIN_API_TOKEN"}),
    ],
    ids=["no-orgs", "no-orgs-include-exclude", "with-orgs"],
)
def test_simulate_with_discovery_says_how_to_collect_and_lists_orgs_to_discover(
    tmp_path: Path, discovery: str, orgs: str, expected: set[str] | None, exported: set[str]
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n'
        '[api]\nbase_url = "https://api.devin.ai"\n'
        '[discovery]\ntoken_env = "DEVIN_ENTERPRISE_TOKEN"\norg_token_env = "DEVIN_ORG_TOKEN"\n'
        f"{discovery}{orgs}"
    )
    served = start_simulate(
        ["--config", str(config), "simulate", "--port", "0"], tmp_path, new_user_env()
    )
    try:
        found = re.search(r"serves orgs: (org-[^ ,\n]+(?:, org-[^ ,\n]+)*)", served.banner)
        assert found, served.banner
        listed = set(found.group(1).split(", "))
        if expected is not None:
            assert listed == expected
        else:  # ids or names matching include, none matching exclude
            assert len(listed) >= 2
            assert not any(o.endswith("-beta") for o in listed)
            assert any(o.startswith("org-prod-") for o in listed)
        exports = dict(re.findall(r"^  export (\w+)=(\S+)$", served.banner, re.MULTILINE))
        assert set(exports) == {"DEVIN_ENTERPRISE_TOKEN", "DEVIN_ORG_TOKEN", *exported}
        # Configure -> Run, exactly as the banner says
        config.write_text(config.read_text().replace("https://api.devin.ai", served.url))
        env = new_user_env(**exports)
        for command in (["db", "upgrade"], ["collect"]):
            proc = subprocess.run(
                [COLLECTOR, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        # every org, discovered or configured: the open window and the one before of
        # sessions, PRs, searches, active users by day, week and month and consumption
        done = re.search(r"collect: (\d+) of (\d+) window\(s\) collected", proc.stdout)
        assert done, proc.stdout
        assert int(done.group(1)) == int(done.group(2)) == 14 * len(listed) > 0
    finally:
        stop(served)


# -- 14: the demo at 80 columns ----------------------------------------------------------------

NEXT_STEP_LINES = (
    "cp config.example.toml collector.toml",
    "export DEVIN_API_TOKEN=cog_",
    "collector db upgrade",
    "collector collect",
)


def check_demo_output(text: str) -> None:
    lines = text.splitlines()
    assert lines, "the demo printed nothing"
    too_long = [line for line in lines if len(line) > 80]
    assert too_long == []
    assert "…" not in text  # nothing truncated: no header, no date
    for header in ("org", "segment", "day", "sessions", "merged", "ACUs", "complete"):
        assert re.search(rf"\b{header}\b", text), header
    rows = [line for line in lines if line.startswith(("org-platform ", "org-research "))]
    dated = [line for line in rows if re.search(r"\s\d{4}-\d{2}-\d{2}\s", line)]
    assert len(dated) >= 3  # whole YYYY-MM-DD dates, at least a day per target
    tail = "\n".join(lines[-8:])
    for step in NEXT_STEP_LINES:
        assert step in tail, step
    assert "Collected" in text


def test_demo_piped_fits_80_columns_and_ends_with_the_next_step(tmp_path: Path) -> None:
    proc = subprocess.run(
        [COLLECTOR, "demo", "--database", str(tmp_path / "demo.db"), "--days", "1"],
        capture_output=True, text=True, env=new_user_env(), timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    check_demo_output(proc.stdout)


def test_demo_on_an_80_column_terminal(tmp_path: Path) -> None:
    code, output, errors = run_on_terminal(
        ["demo", "--database", str(tmp_path / "demo.db"), "--days", "1"],
        new_user_env(COLUMNS="80", LINES="40", TERM="xterm"),
        stderr_apart=True,
    )
    assert code == 0, errors
    check_demo_output(ANSI.sub("", output))
