"""The configuration file: TOML, validated by pydantic, loaded once and passed down.

Tokens are never read from the file: each org names the environment variable that holds its
token, and `resolve_token` reads it when a client is built.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.config_fields import (
    NAME,
    ORG_ID,
    SECRET_KEYS,
    EnvName,
    Interval,
    Seconds,
    SecondsOrZero,
    WindowSize,
    default_jitter,
    is_loopback,
    looks_like_token,
)
from collector.config_fields import interval as interval_seconds
from collector.config_fields import rate_limit as rate_limit_value
from collector.config_sources import DiscoveryConfig, SourcesConfig, check_source_names
from collector.errors import ConfigError
from collector.windows import DAY, format_duration

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("collector.toml")
CONFIG_ENV = "COLLECTOR_CONFIG"
DATABASE_URL_ENV = "COLLECTOR_DATABASE_URL"
ALL_SEGMENT = "all"

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str = "sqlite:///collector.db"
    busy_timeout: Seconds = 30


class ApiConfig(_Section):
    base_url: str = "https://api.devin.ai"
    token_env: EnvName = "DEVIN_API_TOKEN"  # noqa: S105 (a variable's name, not a secret)
    timeout: Seconds = 30
    connect_timeout: Seconds = 10
    #: "auto": each token's rate is learned from the API's answers; a number caps it.
    rate_limit: Annotated[float | Literal["auto"], BeforeValidator(rate_limit_value)] = "auto"
    concurrency: int = Field(default=4, ge=1, le=256)
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_base: float = Field(default=0.5, gt=0, description="seconds before the 1st retry")
    backoff_max: float = Field(default=30.0, gt=0, description="longest wait between attempts")
    retry_after_cap: float = Field(default=120.0, gt=0, description="longest Retry-After obeyed")
    allow_insecure_http: bool = False

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL like https://api.devin.ai")
        if parts.query or parts.fragment:
            raise ValueError("the base URL takes no query string or fragment")
        # The collector adds /v3/organizations/... itself: a base URL copied with the API
        # version on it would ask for /v3/v3/... and every org would look unknown.
        value = value.rstrip("/")
        if value.lower().endswith("/v3"):
            value = value[: -len("/v3")].rstrip("/")
        return value

    @model_validator(mode="after")
    def _refuse_cleartext(self) -> ApiConfig:
        parts = urlsplit(self.base_url)
        cleartext = parts.scheme == "http" and not is_loopback(parts.hostname or "")
        if cleartext and not self.allow_insecure_http:
            raise ValueError(
                f"base_url {self.base_url!r} is plain http to a host that is not loopback: "
                "the token would travel in clear. Use https, or set "
                "allow_insecure_http = true if you really mean it"
            )
        return self


class WindowsConfig(_Section):
    #: Seconds; the file says "1h" (a size that divides a day).
    size: WindowSize = 3600


class ScheduleConfig(_Section):
    """Every duration in whole seconds."""

    interval: Interval = 900
    repoll_ages: tuple[Seconds, ...] = (3600, 6 * 3600, DAY, 3 * DAY, 7 * DAY)
    catchup_horizon: Seconds = 7 * DAY
    #: Not set means derived from the interval: a tenth of it, at most 30s, whole seconds.
    jitter: SecondsOrZero = None  # type: ignore[assignment]
    run_deadline: Seconds | None = None
    access_error_backoff: Seconds = 3600
    shutdown_grace: Seconds = 30

    @model_validator(mode="before")
    @classmethod
    def _derive_jitter(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("jitter") is None:
            try:
                interval = interval_seconds(data.get("interval", 900))
            except (TypeError, ValueError):
                return data  # the interval's own error is reported
            data = {**data, "jitter": default_jitter(interval)}
        return data

    @property
    def deadline(self) -> int:
        """How long one run may take new windows: `run_deadline`, else the interval."""
        return self.run_deadline or self.interval

    @model_validator(mode="after")
    def _jitter_within_slack(self) -> ScheduleConfig:
        if 2 * self.jitter >= self.interval:
            raise ValueError(
                f"jitter ({format_duration(self.jitter)}) must be less than half the interval "
                f"({format_duration(self.interval)}), or runs could skip or repeat a due window"
            )
        return self

    @field_validator("repoll_ages")
    @classmethod
    def _ascending(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if list(value) != sorted(set(value)):
            raise ValueError("repoll_ages must be strictly increasing, like [\"1h\", \"1d\"]")
        return value


class LoggingConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsConfig(_Section):
    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"


class SegmentConfig(_Section):
    name: str
    user_ids: list[str] = Field(default_factory=list)
    service_user_ids: list[str] = Field(default_factory=list)
    playbook_id: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"{value!r} may hold only letters, digits, '_', '-' and '.'")
        if value == ALL_SEGMENT:
            raise ValueError(f"{ALL_SEGMENT!r} is reserved for the whole organization")
        return value

    @model_validator(mode="after")
    def _has_filter(self) -> SegmentConfig:
        if not (self.user_ids or self.service_user_ids or self.playbook_id):
            raise ValueError(
                f"segment {self.name!r} needs user_ids, service_user_ids or playbook_id"
            )
        return self


class OrgConfig(_Section):
    id: str
    name: str | None = None
    token_env: EnvName | None = None
    segments: list[SegmentConfig] = Field(default_factory=list)
    #: Narrows `[sources].enabled` for this org; not set: every enabled source.
    sources: tuple[str, ...] | None = None

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else check_source_names(value)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not ORG_ID.match(value) or ".." in value:
            raise ValueError(
                f"{value!r} is not an organization id: use the id shown by Devin, like org-abc123"
            )
        return value

    @model_validator(mode="after")
    def _unique_segments(self) -> OrgConfig:
        names = [s.name for s in self.segments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"segment names repeat in org {self.id!r}: {', '.join(duplicates)}")
        return self


class Config(_Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    discovery: DiscoveryConfig | None = None
    orgs: list[OrgConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_orgs(self) -> Config:
        if not self.orgs and self.discovery is None:
            raise ValueError(
                "no organization to collect: add an [[orgs]] entry with the org's id, or a "
                "[discovery] section to find the enterprise's organizations"
            )
        ids = [o.id for o in self.orgs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"org ids repeat: {', '.join(duplicates)}")
        for org in self.orgs:
            off = [name for name in org.sources or () if name not in self.sources.enabled]
            if off:
                raise ValueError(
                    f"org {org.id!r} names source(s) {', '.join(off)} that [sources].enabled "
                    "leaves out: add them there, or remove them from the org"
                )
        return self

    def sources_for(self, org: OrgConfig | None) -> tuple[str, ...]:
        """The source families that run for `org` (a discovered org: None)."""
        enabled = self.sources.enabled
        if org is None or org.sources is None:
            return enabled
        return tuple(name for name in enabled if name in org.sources)

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what was meant; logged at load."""
        found = []
        interval, size = self.schedule.interval, self.windows.size
        if interval > size:
            found.append(
                f"[schedule].interval ({format_duration(interval)}) is longer than "
                f"[windows].size ({format_duration(size)}): some windows will never be fetched "
                "while they are open, only after they close. Make the interval at most the "
                "window size"
            )
        for family in self.sources.enabled:
            own = self.sources.options(family).interval
            if own is not None and own < interval:
                found.append(
                    f"[sources.{family}].interval ({format_duration(own)}) is shorter than "
                    f"[schedule].interval ({format_duration(interval)}): the daemon runs "
                    "every [schedule].interval, so that is as often as it can fetch"
                )
        return found

    def discovered_org(self, org_id: str, name: str | None) -> OrgConfig:
        """The settings of an org found by discovery: the defaults and its token."""
        assert self.discovery is not None
        return OrgConfig(id=org_id, name=name, token_env=self.discovery.org_token)

    def org(self, org_id: str) -> OrgConfig:
        for org in self.orgs:
            if org.id == org_id:
                return org
        raise ConfigError(f"org {org_id!r} is not in the configuration")

    def token_env_for(self, org: OrgConfig) -> str:
        return org.token_env or self.api.token_env

    def token_label(self, org: OrgConfig) -> str:
        """What output calls the org's token: its variable's name (``$DEVIN_API_TOKEN``),
        never its value."""
        return f"${self.token_env_for(org)}"


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """Where the configuration is read from: the flag, else $COLLECTOR_CONFIG, else ./."""
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read and validate `path`; `env` may override the database URL."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (line {line} holds bytes that are not UTF-8): the "
            "configuration must be a TOML file encoded in UTF-8. Save it again as UTF-8"
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found. Copy config.example.toml to {path} "
            "and edit it, or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, env, source=str(path))


def parse_config(data: dict[str, Any], env: Mapping[str, str], *, source: str) -> Config:
    """Validate already-parsed TOML data; errors name `source`, the key and the problem."""
    override = env.get(DATABASE_URL_ENV)
    if override:
        database = dict(data.get("database") or {})
        database["url"] = override
        data = {**data, "database": database}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    for warning in config.warnings():
        log.warning("%s: %s", source, warning)
    return config


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        name = str(loc[-1]) if loc else ""
        token_key = error["type"] == "extra_forbidden" and looks_like_token(name)
        if token_key:
            loc = loc[:-1]  # the key's name is the token: say where it is, never what
        key = ""
        for part in loc:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        message = error["msg"].removeprefix("Value error, ")
        if token_key or (error["type"] == "extra_forbidden" and name.lower() in SECRET_KEYS):
            # a secret: say where it belongs, never what it is
            what, it = ("a key that looks like a token: ", "it") if token_key else ("", "this key")
            message = (
                f"{what}tokens are never read from this file, only from the environment: "
                f"remove {it}, export the token in an environment variable and name that "
                'variable in token_env (like token_env = "DEVIN_API_TOKEN")'
            )
        elif error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against config.example.toml)"
        lines.append(f"  {key or '(top level)'}: {message}")
    return "\n".join(lines)


def resolve_token(config: Config, org: OrgConfig, env: Mapping[str, str]) -> str:
    """The token for `org`, read from the environment variable the config names."""
    name = config.token_env_for(org)
    token = env.get(name, "").strip()
    if not token:
        raise ConfigError(
            f"no API token for org {org.id!r}: set the environment variable {name} "
            "to a Devin service-user token (cog_...)"
        )
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        # never echo the value: it is a secret, however malformed
        raise ConfigError(
            f"the environment variable {name} (token of org {org.id!r}) holds spaces, line "
            "breaks or other characters a token cannot have: check how it was set"
        )
    return token
