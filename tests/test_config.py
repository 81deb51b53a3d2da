from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from collector.cli import main
from collector.config import config_path, load_config, parse_config, resolve_token
from collector.errors import ConfigError

MINIMAL = '[[orgs]]\nid = "org-abc123"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    config = load_config(example, {})
    assert config.orgs[0].id == "org-abc123"
    assert config.orgs[0].segments[0].user_ids == ["user-1", "user-2"]
    assert config.windows.size == 3600
    assert config.schedule.repoll_ages == (3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    assert config.database.url == "sqlite:///collector.db"
    assert config.api.base_url == "https://api.devin.ai"
    assert config.api.token_env == "DEVIN_API_TOKEN"
    # durations are whole seconds once loaded: nothing downstream parses text again
    assert config.windows.size == 3600
    assert config.schedule.interval == 900
    assert config.schedule.repoll_ages == (3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
    assert (config.schedule.catchup_horizon, config.schedule.deadline) == (7 * 86400, 900)
    assert (config.api.timeout, config.api.connect_timeout) == (30, 10)
    assert config.database.busy_timeout == 30


def test_env_overrides_database_url(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL), {"COLLECTOR_DATABASE_URL": "sqlite:///other.db"}
    )
    assert config.database.url == "sqlite:///other.db"


def test_config_path_resolution(tmp_path: Path) -> None:
    assert config_path("x.toml", {"COLLECTOR_CONFIG": "y.toml"}) == Path("x.toml")
    assert config_path(None, {"COLLECTOR_CONFIG": "y.toml"}) == Path("y.toml")
    assert config_path(None, {}) == Path("collector.toml")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (MINIMAL + "[windows]\nsize = \"7m\"\n", "windows.size", "does not divide a day"),
        (MINIMAL + "[windows]\nsizes = \"1h\"\n", "windows.sizes", "unknown key"),
        (MINIMAL + "[schedule]\ninterval = \"soon\"\n", "schedule.interval", "not a duration"),
        (MINIMAL + "[schedule]\nrepoll_ages = [\"1d\", \"1h\"]\n", "schedule.repoll_ages",
         "strictly increasing"),
        (MINIMAL + "[schedule]\ninterval = \"1m\"\njitter = \"30s\"\n", "schedule",
         "less than half the interval"),
        ('[[orgs]]\nid = "org/../etc"\n', "orgs[0].id", "not an organization id"),
        ('[[orgs]]\nid = "../x"\n', "orgs[0].id", "not an organization id"),
        ('[[orgs]]\nid = "org-a"\n[[orgs]]\nid = "org-a"\n', "(top level)", "org ids repeat"),
        ("[api]\nbase_url = \"https://x\"\n", "(top level)", "no organization to collect"),
        (MINIMAL + "[sources]\nenabled = [\"sessions\", \"pr\"]\n", "sources.enabled",
         "unknown source 'pr'"),
        ('[sources]\nenabled = ["sessions"]\n[[orgs]]\nid = "org-a"\nsources = ["prs"]\n',
         "(top level)", "[sources].enabled leaves out"),
        ('[discovery]\nrefresh = "1h"\n', "discovery.token_env", "Field required"),
        (MINIMAL + "[sources.active_users]\nmin_sessions = -1\n",
         "sources.active_users.min_sessions", "greater than or equal to 0"),
        (MINIMAL + "[api]\nbase_url = \"http://api.example.com\"\n", "api", "in clear"),
        (MINIMAL + "[api]\nbase_url = \"ftp://x\"\n", "api.base_url", "not an http(s) URL"),
        (MINIMAL + "[api]\nrate_limit = 0\n", "api.rate_limit",
         "a number of requests per second above 0"),
        (MINIMAL + "[api]\ntoken_env = \"my token\"\n", "api.token_env",
         "not an environment variable name"),
        (MINIMAL + "[[orgs.segments]]\nname = \"x\"\n", "orgs[0].segments[0]",
         "needs user_ids"),
        (MINIMAL + "[[orgs.segments]]\nname = \"all\"\nuser_ids=[\"u\"]\n",
         "orgs[0].segments[0].name", "reserved"),
        (MINIMAL + "[logging]\nformat = \"xml\"\n", "logging.format", "'text' or 'json'"),
    ],
)
def test_invalid_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert str(path) in message
    assert f"  {key}:" in message
    assert problem in message


def test_insecure_http_allowed_when_explicit_and_loopback_always(tmp_path: Path) -> None:
    text = MINIMAL + '[api]\nbase_url = "http://api.example.com"\nallow_insecure_http = true\n'
    assert load_config(write(tmp_path, text), {}).api.base_url == "http://api.example.com"
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9000"):
        data = {"api": {"base_url": f"http://{host}/"}, "orgs": [{"id": "org-a"}]}
        assert parse_config(data, {}, source="t").api.base_url == f"http://{host}"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collector.toml: not valid TOML"):
        load_config(write(tmp_path, "[orgs\n"), {})
    with pytest.raises(ConfigError, match=r"configuration file not found"):
        load_config(tmp_path / "nope.toml", {})


@pytest.mark.parametrize("value", ["cog_a\ncog_b", "cog a", "cog_\x00x", "cog_é"])
def test_malformed_token_is_refused_without_echoing_it(tmp_path: Path, value: str) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    with pytest.raises(ConfigError) as info:
        resolve_token(config, config.orgs[0], {"DEVIN_API_TOKEN": value})
    assert "DEVIN_API_TOKEN" in str(info.value)
    assert value not in str(info.value)
    assert resolve_token(config, config.orgs[0], {"DEVIN_API_TOKEN": " cog_ok\n"}) == "cog_ok"


def test_missing_token_names_org_and_variable(tmp_path: Path) -> None:
    text = MINIMAL + '[[orgs]]\nid = "org-two"\ntoken_env = "TOKEN_TWO"\n'
    config = load_config(write(tmp_path, text), {})
    env = {"DEVIN_API_TOKEN": "cog_one"}
    assert resolve_token(config, config.orgs[0], env) == "cog_one"
    with pytest.raises(ConfigError) as info:
        resolve_token(config, config.orgs[1], env)
    assert "org-two" in str(info.value)
    assert "TOKEN_TWO" in str(info.value)


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [("10s", 1), ("5s", 0), ("1s", 0), ("2m", 12), ("15m", 30), ("1h", 30)],
)
def test_jitter_not_set_follows_the_interval(tmp_path: Path, interval: str, seconds: int) -> None:
    config = load_config(write(tmp_path, MINIMAL + f'[schedule]\ninterval = "{interval}"\n'), {})
    assert config.schedule.jitter == seconds
    assert 2 * seconds < config.schedule.interval


def test_jitter_set_explicitly_is_kept_and_checked(tmp_path: Path) -> None:
    text = MINIMAL + '[schedule]\ninterval = "10s"\njitter = "4s"\n'
    assert load_config(write(tmp_path, text), {}).schedule.jitter == 4
    with pytest.raises(ConfigError, match=r"jitter \(5s\) must be less than half the interval"):
        load_config(write(tmp_path, text.replace('"4s"', '"5s"')), {})


@pytest.mark.parametrize("interval", ["0s", "0m", "500ms", "0.5s"])
def test_interval_under_a_second_is_refused_as_such(tmp_path: Path, interval: str) -> None:
    path = write(tmp_path, MINIMAL + f'[schedule]\ninterval = "{interval}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "  schedule.interval: interval must be at least 1s" in str(info.value)
    assert "jitter" not in str(info.value)


def test_interval_longer_than_the_window_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, MINIMAL + '[windows]\nsize = "30m"\n[schedule]\ninterval = "1h"\n')
    with caplog.at_level("WARNING", logger="collector.config"):
        config = load_config(path, {})
    assert config.schedule.interval == 3600
    warnings = [r for r in caplog.records if r.name == "collector.config"]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
    message = warnings[0].getMessage()
    assert str(path) in message
    assert "[schedule].interval (1h) is longer than [windows].size (30m)" in message
    caplog.clear()
    with caplog.at_level("WARNING", logger="collector.config"):
        load_config(write(tmp_path, MINIMAL + '[schedule]\ninterval = "1h"\n'), {})
    assert [r for r in caplog.records if r.name == "collector.config"] == []


SECRET = "cog_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + f'[api]\ntoken_env = "{SECRET}"\n', "api.token_env"),
        (f'[[orgs]]\nid = "org-abc123"\ntoken_env = "{SECRET}"\n', "orgs[0].token_env"),
        (MINIMAL + '[api]\ntoken_env = "' + "Zq8xW2pL9vN4" * 4 + '"\n', "api.token_env"),
    ],
)
def test_token_in_token_env_is_refused_without_echoing_it(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    message = str(info.value)
    assert f"  {key}: this looks like a token, not the name of an environment variable" in message
    assert "put the variable's NAME here" in message
    assert SECRET not in message
    assert "Zq8xW2pL9vN4" not in message


def test_bad_variable_name_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + '[api]\ntoken_env = "my secret value"\n'), {})
    assert "  api.token_env: the value is not an environment variable name" in str(info.value)
    assert "my secret value" not in str(info.value)
    long_name = "DEVIN_API_TOKEN_FOR_THE_PLATFORM_TEAM_IN_PRODUCTION"
    text = MINIMAL + f'[api]\ntoken_env = "{long_name}"\n'
    assert load_config(write(tmp_path, text), {}).api.token_env == long_name


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + f'[api]\ntoken = "{SECRET}"\n', "api.token"),
        (MINIMAL + f'token = "{SECRET}"\n', "orgs[0].token"),
        (MINIMAL + f'api_key = "{SECRET}"\n', "orgs[0].api_key"),
        (f'token = "{SECRET}"\n' + MINIMAL, "token"),
    ],
)
def test_token_in_the_file_says_where_tokens_belong(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    message = str(info.value)
    assert f"  {key}: tokens are never read from this file, only from the environment" in message
    assert "token_env" in message
    assert "unknown key" not in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "base_url",
    ["https://api.devin.ai/v3", "https://api.devin.ai/v3/", "https://api.devin.ai/V3//",
     "https://api.devin.ai/"],
)
def test_base_url_loses_a_trailing_v3(tmp_path: Path, base_url: str) -> None:
    text = MINIMAL + f'[api]\nbase_url = "{base_url}"\n'
    assert load_config(write(tmp_path, text), {}).api.base_url == "https://api.devin.ai"


def test_base_url_keeps_a_path_prefix(tmp_path: Path) -> None:
    text = MINIMAL + '[api]\nbase_url = "https://proxy.example.com/devin/v3/"\n'
    assert load_config(write(tmp_path, text), {}).api.base_url == (
        "https://proxy.example.com/devin"
    )


def test_discovery_alone_is_a_configuration() -> None:
    data = {"discovery": {"token_env": "ENTERPRISE_TOKEN", "exclude": ["org-sandbox-*"]}}
    config = parse_config(data, {}, source="t")
    assert config.orgs == []
    assert config.discovery is not None
    assert config.discovery.refresh == 3600
    org = config.discovered_org("org-x", "X")
    assert (org.id, org.name, config.token_env_for(org)) == ("org-x", "X", "ENTERPRISE_TOKEN")


# -- through the command line: what a user meets ----------------------------------------------

#: Nothing listens here: no test below may reach an API.
NOWHERE = "http://127.0.0.1:9"
LEGACY_USER_KEY = "apk_user_0a1b2c3d4e5f6a7b8c9d0e1f"
LEGACY_KEY = "apk_0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def collect(tmp_path: Path, text: str | bytes) -> Result:
    """`collector collect` on `text` as the configuration file (a SQLite file in `tmp_path`,
    the API on a loopback port where nothing listens), with no token in the environment."""
    path = tmp_path / "collector.toml"
    if isinstance(text, str):
        text = (f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n'
                f'[api]\nbase_url = "{NOWHERE}"\n' + text).encode()
    path.write_bytes(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVIN", "COLLECTOR_"))}
    return CliRunner().invoke(main, ["--config", str(path), "collect"], env=env)


@pytest.mark.parametrize("secret", [LEGACY_USER_KEY, LEGACY_KEY, SECRET])
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('token_env = "{s}"\n[[orgs]]\nid = "org-abc123"\n', "api.token_env"),
        ('[[orgs]]\nid = "org-abc123"\ntoken_env = "{s}"\n', "orgs[0].token_env"),
        ('[discovery]\ntoken_env = "{s}"\n', "discovery.token_env"),
        ('[discovery]\ntoken_env = "ENTERPRISE_TOKEN"\norg_token_env = "{s}"\n',
         "discovery.org_token_env"),
    ],
)
def test_collect_refuses_any_devin_token_as_a_variable_name_without_echoing_it(
    tmp_path: Path, text: str, key: str, secret: str
) -> None:
    result = collect(tmp_path, text.format(s=secret))
    assert result.exit_code == 2, result.output
    assert f"  {key}: this looks like a token, not the name of an environment variable" in (
        result.stderr
    )
    assert secret not in result.output
    assert secret[4:] not in result.output  # not even without its prefix


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"{SECRET} = 1\n" + MINIMAL, "api"),
        (f'{LEGACY_KEY} = "x"\n' + MINIMAL, "api"),
        (f"[api.{LEGACY_USER_KEY}]\nx = 1\n" + MINIMAL, "api"),
        (MINIMAL + f"{SECRET} = true\n", "orgs[0]"),
        (f'[discovery]\ntoken_env = "ENTERPRISE_TOKEN"\n{LEGACY_KEY} = 1\n', "discovery"),
        (MINIMAL + f"[sources.sessions]\n{SECRET} = 1\n", "sources.sessions"),
    ],
)
def test_a_key_named_like_a_token_is_never_echoed(tmp_path: Path, text: str, where: str) -> None:
    result = collect(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert (
        f"  {where}: a key that looks like a token: tokens are never read from this file, "
        "only from the environment"
    ) in result.stderr
    assert "unknown key" not in result.output
    for secret in (SECRET, LEGACY_KEY, LEGACY_USER_KEY):
        assert secret not in result.output
        assert secret[4:] not in result.output


def test_a_token_as_a_top_level_key_is_never_echoed(tmp_path: Path) -> None:
    result = collect(tmp_path, f'[[orgs]]\nid = "org-abc123"\n[{SECRET}]\nx = 1\n')
    assert result.exit_code == 2, result.output
    assert "  (top level): a key that looks like a token" in result.stderr
    assert SECRET not in result.output


def test_an_unknown_key_is_still_named(tmp_path: Path) -> None:
    result = collect(tmp_path, "retries = 3\n" + MINIMAL)
    assert result.exit_code == 2, result.output
    assert "  api.retries: unknown key (check the spelling" in result.stderr


@pytest.mark.parametrize(
    "raw",
    [
        '[[orgs]]\nid = "org-abc123"\nname = "Équipe"\n'.encode("latin-1"),
        '[[orgs]]\nid = "org-abc123"\n'.encode("utf-16"),
    ],
)
def test_a_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path, raw: bytes) -> None:
    result = collect(tmp_path, raw)
    assert result.exit_code == 2, (result.output, result.exception)
    path = tmp_path / "collector.toml"
    assert result.stderr.startswith(f"error: {path}: not UTF-8 text")
    assert "must be a TOML file encoded in UTF-8" in result.stderr
    assert "Traceback" not in result.output
