"""`collector check`: what the configured tokens can read, before anyone waits for data.

One ``GET /v3/self`` per distinct token variable (who the token is), then one request per
org and source family over the last closed window (or bucket) of its whole-org target.
Each check becomes a `CheckResult`: ok, or what failed and the fix. Nothing is written and
the database is never opened. Token values never appear in results: only the names of the
variables that hold them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from collector.assembly import credentials
from collector.calendars import Calendar
from collector.client import DevinClient, make_client
from collector.config import ALL_SEGMENT, Config, OrgConfig, resolve_token
from collector.credentials import Credentials
from collector.discovery import select
from collector.errors import (
    ApiError,
    AuthenticationError,
    CollectorError,
    ConfigError,
    NetworkError,
    OrgNotFoundError,
    PermissionDeniedError,
    TransientApiError,
)
from collector.sources import FAMILIES
from collector.targets import Target, targets_from_config
from collector.windows import Window

#: A check makes each request at most this many times: one retry for a blip, no more.
MAX_ATTEMPTS = 2
#: ... and waits at most this long for a Retry-After before calling it a failure.
RETRY_AFTER_CAP = 10.0

#: What ``/v3/self`` names a principal by (its name field, then its id fields), by type.
_IDENTITY_FIELDS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "service_user": ("service_user_name", ("service_user_id",)),
    "pat_user": ("user_name", ("user_id", "api_key_name")),
    "devin_brain": (None, ("devin_id", "user_id")),
    "windsurf_session": ("user_name", ("user_id",)),
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: a token (``kind="token"``, `org_id` the org ``/v3/self`` names, if any)
    or one source family of one org (``kind="source"``). `token_env` is the token's label
    (``$DEVIN_API_TOKEN``), never its value; `fix` says what to do when not `ok`."""

    kind: Literal["token", "source"]
    token_env: str
    org_id: str | None
    source: str | None
    ok: bool
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Every check in order (each token, then each org's sources), and notes for people."""

    results: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def last_closed(calendar: Calendar, now: float) -> Window:
    """The bucket before the open one."""
    return calendar.at(calendar.at(now).start - 1)


def whole_org_targets(config: Config) -> dict[tuple[str, str], Target]:
    """Per (org id, source family), the first whole-org target of the family: segment
    ``all``, or the definition's target of a source segments do not apply to (for active
    users, the daily one)."""
    chosen: dict[tuple[str, str], Target] = {}
    for target in targets_from_config(config):
        if target.segment == ALL_SEGMENT or not target.source.segmented:
            chosen.setdefault((target.org_id, target.source.config_name), target)
    return chosen


def run_check(
    config: Config,
    env: Mapping[str, str],
    *,
    now: float | None = None,
    transport: httpx.BaseTransport | None = None,
) -> CheckReport:
    """Check every token variable and every (org, source family) of `config`; tokens are
    read from `env`. Makes one request per distinct token and one per (org, family), none
    for an org whose token is missing or rejected, or whose API could not be reached."""
    now = time.time() if now is None else now
    report = CheckReport()
    by_env: dict[str, list[OrgConfig]] = {}
    for org in config.orgs:
        by_env.setdefault(config.token_env_for(org), []).append(org)

    # Tokens read from the environment: a missing or malformed one fails its orgs here.
    unusable: dict[str, CheckResult] = {}
    for name, orgs in by_env.items():
        try:
            resolve_token(config, orgs[0], env)
        except ConfigError:
            unusable[name] = _unusable_token(name, orgs, env)
    usable = [org.id for name, orgs in by_env.items() if name not in unusable for org in orgs]
    configured = config.model_copy(update={"discovery": None})  # its tokens: checked below
    client = _client(config, credentials(configured, env, usable), transport) if usable else None
    try:
        skip: dict[str, CheckResult] = dict(unusable)
        for name, orgs in by_env.items():
            if name in unusable:
                report.results.append(unusable[name])
                continue
            assert client is not None
            result, fatal = _check_token(client, config, name, orgs)
            report.results.append(result)
            if fatal:
                skip[name] = result
        targets = whole_org_targets(config)
        pending: list[CheckResult | Future[CheckResult]] = []
        with ThreadPoolExecutor(config.api.concurrency, "check") as pool:
            for org in config.orgs:
                name = config.token_env_for(org)
                for family in config.sources_for(org):
                    if name in skip:
                        pending.append(_not_checked(config, org, family, skip[name]))
                    else:
                        pending.append(pool.submit(
                            _check_source, client, config, targets[(org.id, family)], now
                        ))
        report.results += [p if isinstance(p, CheckResult) else p.result() for p in pending]
    finally:
        if client is not None:
            client.close()
    if config.discovery is not None:
        report.results.append(_check_discovery(config, env, transport))
    report.notes += _notes(config)
    return report


def _check_discovery(
    config: Config, env: Mapping[str, str], transport: httpx.BaseTransport | None
) -> CheckResult:
    """Can `[discovery]` list the enterprise's organizations, and how many does it take."""
    assert config.discovery is not None
    label = f"${config.discovery.token_env}"
    try:
        tokens = credentials(config.model_copy(update={"orgs": []}), env)
    except ConfigError as exc:
        return CheckResult("source", label, None, "discovery", False, str(exc),
                           f"export {config.discovery.token_env}")
    client = _client(config, tokens, transport)
    try:
        listed = client.organizations()
    except CollectorError as exc:
        if isinstance(exc, PermissionDeniedError):
            return CheckResult(
                "source", label, None, "discovery", False, str(exc),
                f"give the service user of {label} the ManageOrganizations permission",
            )
        detail, fix = _failure(exc, config, label, what="organization listing")
        return CheckResult("source", label, None, "discovery", False, detail, fix)
    finally:
        client.close()
    taken = select(config, listed)
    names = ", ".join(o.id for o in taken[:5]) + (", ..." if len(taken) > 5 else "")
    return CheckResult(
        "source", label, None, "discovery", True,
        f"{len(listed)} organization(s) listed; {len(taken)} taken beside [[orgs]]"
        + (f" ({names})" if names else ""),
    )


def _client(
    config: Config, tokens: Credentials, transport: httpx.BaseTransport | None
) -> DevinClient:
    """A client that gives up fast: a check reports a problem, it does not wait it out."""
    api = config.api.model_copy(update={
        "max_attempts": min(config.api.max_attempts, MAX_ATTEMPTS),
        "retry_after_cap": min(config.api.retry_after_cap, RETRY_AFTER_CAP),
    })
    return make_client(config.model_copy(update={"api": api}), tokens, transport=transport)


def _unusable_token(
    name: str, orgs: Sequence[OrgConfig], env: Mapping[str, str]
) -> CheckResult:
    """The token row of a variable `resolve_token` refused: unset or empty, or malformed."""
    label = f"${name}"
    if env.get(name, "").strip():
        detail = f"{label} holds spaces, line breaks or other characters a token cannot have"
        fix = f"set {name} again to the token alone, with no quotes, spaces or line breaks"
    else:
        detail = f"{label} is not set or empty (the token of {', '.join(o.id for o in orgs)})"
        fix = f"export {name}=<a Devin service-user token (cog_...)>, then run the check again"
    return CheckResult("token", label, None, None, False, detail, fix)


def _check_token(
    client: DevinClient, config: Config, name: str, orgs: Sequence[OrgConfig]
) -> tuple[CheckResult, bool]:
    """The token row of variable `name`, and whether its failure dooms every request made
    with it (a rejected token, an API out of reach): its orgs' sources are then not tried."""
    label = f"${name}"
    try:
        identity = client.whoami(orgs[0].id)
    except PermissionDeniedError as exc:
        # The pages disagree on whether /v3/self needs ReadAccountMeta: not knowing who the
        # token is does not stop it reading metrics, which its source lines show.
        detail = f"identity not shown: {exc}; used by {', '.join(o.id for o in orgs)}"
        return CheckResult("token", label, None, None, True, detail), False
    except CollectorError as exc:
        detail, fix = _failure(exc, config, label, what="GET /v3/self")
        fatal = isinstance(exc, AuthenticationError | NetworkError)
        return CheckResult("token", label, None, None, False, detail, fix), fatal
    own_org = identity.get("org_id")
    own_org = own_org if isinstance(own_org, str) and own_org else None
    detail = _describe_identity(identity)
    detail += f"; used by {', '.join(o.id for o in orgs)}"
    others = [o.id for o in orgs if own_org is not None and o.id != own_org]
    if others:
        detail += (
            f" (the token belongs to {own_org}: expect {', '.join(others)} to be refused "
            "unless it was granted access there)"
        )
    return CheckResult("token", label, own_org, None, True, detail), False


def _describe_identity(identity: Mapping[str, object]) -> str:
    """``service user "ci-metrics" (service_user_id su-1), org org-alpha``: who, never the
    token (``/v3/self`` does not send it)."""
    kind = str(identity.get("principal_type") or "unknown principal")
    name_key, id_keys = _IDENTITY_FIELDS.get(kind, ("user_name", ("user_id",)))
    text = kind.replace("_", " ")
    name = identity.get(name_key) if name_key else None
    if isinstance(name, str) and name:
        text += f" {json.dumps(name, ensure_ascii=False)}"
    ids = [f"{key} {value}" for key in id_keys
           if isinstance(value := identity.get(key), str) and value]
    if ids:
        text += f" ({', '.join(ids)})"
    org = identity.get("org_id")
    return text + (f", org {org}" if isinstance(org, str) and org else ", of no single org")


def _check_source(
    client: DevinClient | None, config: Config, target: Target, now: float
) -> CheckResult:
    assert client is not None  # made whenever a token was usable
    label = config.token_label(config.org(target.org_id))
    family = target.source.config_name
    window = last_closed(target.calendar, now)
    try:
        client.fetch(target, window)
    except CollectorError as exc:
        detail, fix = _failure(exc, config, label, target=target)
        return CheckResult("source", label, target.org_id, family, False, detail, fix)
    return CheckResult(
        "source", label, target.org_id, family, True,
        f"read {target.source.name} {_span(window)}",
    )


def _not_checked(
    config: Config, org: OrgConfig, family: str, cause: CheckResult
) -> CheckResult:
    return CheckResult(
        "source", config.token_label(org), org.id, family, False,
        f"not tried: {cause.detail}", cause.fix,
    )


def _failure(
    exc: CollectorError,
    config: Config,
    label: str,
    *,
    target: Target | None = None,
    what: str = "",
) -> tuple[str, str]:
    """What went wrong, and the fix, for a request made with the token of `label`."""
    name = label.removeprefix("$")
    base_url = config.api.base_url
    status = exc.status if isinstance(exc, ApiError) else None
    if isinstance(exc, AuthenticationError) or status == 401:
        return (
            "401: the API rejected the token",
            f"the token in {name} is invalid or expired: create a new service-user token "
            f"in Devin and export it in {name}",
        )
    if isinstance(exc, NetworkError):
        return (
            f"the API could not be reached at {base_url} ({exc})",
            "check [api].base_url and the network (proxy, firewall, DNS) from this machine",
        )
    if target is not None and (isinstance(exc, PermissionDeniedError) or status == 403):
        return (
            f"403: the token may not read {target.source.config_name} of {target.org_id}",
            f"give the service user of {label} the {target.source.permission} permission in "
            f"org {target.org_id}",
        )
    if target is not None and (isinstance(exc, OrgNotFoundError) or status == 404):
        return (
            f"404: the API does not know organization {target.org_id}",
            f"check the org id {target.org_id!r} in the configuration (as Devin shows it, "
            f"like org-abc123) and [api].base_url ({base_url})",
        )
    if what and status == 404:
        return (f"404: no {what} at {base_url}", "check [api].base_url")
    if isinstance(exc, TransientApiError):
        return (str(exc), "probably transient: run the check again in a minute")
    return (str(exc), "see the message; if it persists, report it with this output")


def _span(window: Window) -> str:
    def fmt(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")

    return f"{fmt(window.start)} .. {fmt(window.end)}"


def _notes(config: Config) -> list[str]:
    segmented = [f for f, sources in FAMILIES.items() if sources[0].segmented]
    whole = [f for f in FAMILIES if f not in segmented]
    return [
        f"{org.id}: segments ({', '.join(s.name for s in org.segments)}) apply only to "
        f"{' and '.join(segmented)}; {', '.join(whole)} ignore them and read the whole org"
        for org in config.orgs
        if org.segments
    ]
