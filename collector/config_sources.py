"""The `[sources]` and `[discovery]` sections of the configuration: which endpoints run, each
one's schedule and options, and how organizations are found. Parsed once, at load.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.config_fields import EnvName, Interval, Seconds
from collector.sources import FAMILIES
from collector.windows import DAY

HOUR = 3600


def check_source_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` without repeats; an unknown one is refused, listing the sources."""
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(
            f"unknown source {', '.join(map(repr, unknown))}; the sources are "
            f"{', '.join(FAMILIES)}"
        )
    return tuple(dict.fromkeys(names))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceOptions(_Section):
    """Any source: how often its open window (or bucket) is fetched, and the ages after it
    closes at which it is fetched again before it is settled. Not set: `[schedule]`'s."""

    interval: Interval | None = None
    repoll_ages: tuple[Seconds, ...] | None = None

    @field_validator("repoll_ages")
    @classmethod
    def _ascending(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and list(value) != sorted(set(value)):
            raise ValueError("repoll_ages must be strictly increasing, like [\"1h\", \"1d\"]")
        return value


class ActiveUsersOptions(SourceOptions):
    """Daily, weekly and monthly active users. A user is active in a bucket with at least
    `min_sessions` sessions or `min_searches` searches in it; both are stored with each
    row, so rows of two definitions never mix. One call covers up to `*_per_call` buckets."""

    interval: Interval | None = HOUR
    repoll_ages: tuple[Seconds, ...] | None = (HOUR, DAY)
    min_sessions: int = Field(default=1, ge=0)
    min_searches: int = Field(default=1, ge=0)
    days_per_call: int = Field(default=31, ge=1, le=366)
    weeks_per_call: int = Field(default=13, ge=1, le=104)
    months_per_call: int = Field(default=12, ge=1, le=36)


class ConsumptionOptions(SourceOptions):
    """ACUs per billing day (08:00 UTC to 08:00 UTC), up to `days_per_call` days a call."""

    interval: Interval | None = HOUR
    repoll_ages: tuple[Seconds, ...] | None = (HOUR, DAY, 3 * DAY, 7 * DAY)
    days_per_call: int = Field(default=31, ge=1, le=366)


class SourcesConfig(_Section):
    """Which sources run (`enabled`, all by default; an org may narrow it with its own
    `sources`), and each one's options."""

    enabled: tuple[str, ...] = tuple(FAMILIES)
    sessions: SourceOptions = Field(default_factory=SourceOptions)
    prs: SourceOptions = Field(default_factory=SourceOptions)
    searches: SourceOptions = Field(default_factory=SourceOptions)
    active_users: ActiveUsersOptions = Field(default_factory=ActiveUsersOptions)
    consumption: ConsumptionOptions = Field(default_factory=ConsumptionOptions)

    @field_validator("enabled")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("enable at least one source")
        return check_source_names(value)

    def options(self, family: str) -> SourceOptions:
        found: SourceOptions = getattr(self, family)
        return found


class DiscoveryConfig(_Section):
    """Organizations found by listing the enterprise's (``GET /v3/enterprise/organizations``)
    with `token_env`'s token, at start and every `refresh`. `include` and `exclude` are
    shell-style globs matched against an org's id or its name. Discovered orgs take the
    default sources and schedule, and the token in `org_token_env` (default: `token_env`).
    Orgs of `[[orgs]]` keep their own settings."""

    token_env: EnvName
    refresh: Seconds = HOUR
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    org_token_env: EnvName | None = None

    @property
    def org_token(self) -> str:
        return self.org_token_env or self.token_env
