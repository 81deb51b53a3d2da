"""The one assembly point: a collector (store, client, policy) built from a configuration.

`collector collect`, `collector backfill`, `collector run` and the demo all open a collector
here and differ only in the windows they hand `Collector.collect`. Tokens are read from the
environment once, registered for scrubbing from every log line before any request is made,
and kept only inside the client's `Credentials`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine

from collector import db
from collector.client import AttemptHook, DevinClient, make_client
from collector.collection import Policy, Report, Work, run_collection
from collector.config import Config, OrgConfig, resolve_token
from collector.credentials import ANY_ORG, ENTERPRISE, Credentials
from collector.discovery import discover
from collector.errors import ApiError, ConfigError
from collector.logs import register_secrets
from collector.outcomes import Outcome
from collector.store import Store
from collector.throttle import Clock

log = logging.getLogger("collector.assembly")


@dataclass
class Collector:
    """What the commands collect with. Built by `open_collector`; tests build one from
    parts of their own (a client against the simulator, a store on a test database)."""

    config: Config
    store: Store
    client: DevinClient
    #: Every org collected: the configured ones, then those discovery found.
    orgs: list[OrgConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.orgs:
            self.orgs = list(self.config.orgs)

    def refresh_orgs(self) -> tuple[list[str], list[str]]:
        """Record the configured orgs, list the enterprise's when `[discovery]` is set,
        and keep `orgs` and the `organizations` table in step. Returns the ids added and
        removed. A listing that fails keeps the orgs known before (logged)."""
        now = time.time()
        self.store.record_orgs([(o.id, o.name) for o in self.config.orgs], now)
        if self.config.discovery is None:
            return [], []
        try:
            found = discover(self.config, self.client)
        except ApiError as exc:
            log.warning("discovery: could not list the organizations: %s; going on with the "
                        "%d known", exc, len(self.orgs))
            return [], []
        before = {o.id for o in self.orgs}
        self.orgs = [*self.config.orgs, *found]
        self.store.record_orgs([(o.id, o.name) for o in found], now, origin="discovered")
        after = {o.id for o in self.orgs}
        added, removed = sorted(after - before), sorted(before - after)
        if added or removed:
            log.info("discovery: %d org(s) found; added %s; removed %s", len(found),
                     ", ".join(added) or "none", ", ".join(removed) or "none")
        return added, removed

    @property
    def policy(self) -> Policy:
        return Policy.from_config(self.config)

    def collect(
        self,
        work: Iterable[Work],
        *,
        clock: Clock = time.time,
        concurrency: int | None = None,
        batch_size: int = 50,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
        on_saved: Callable[[Sequence[Outcome]], None] | None = None,
        owner: str | None = None,
    ) -> Report:
        """Fetch and store every (target, window) of `work`; see `run_collection`."""
        return run_collection(
            self.client,
            self.store,
            work,
            policy=self.policy,
            clock=clock,
            concurrency=concurrency or self.config.api.concurrency,
            batch_size=batch_size,
            deadline=deadline,
            stop=stop,
            on_saved=on_saved,
            owner=owner,
        )


def open_engine(config: Config) -> Engine:
    return db.create_engine_for(config.database.url, busy_timeout=config.database.busy_timeout)


@contextmanager
def open_store(config: Config, *, writable: bool = True) -> Iterator[Store]:
    """The store of `config`'s database, checked: at the newest migration, writable (unless
    only read), collected at the configured window size (recorded on first write)."""
    engine = open_engine(config)
    try:
        db.require_current_schema(engine, writable=writable)
        store = Store(engine)
        store.check_window_size(config.windows.size, record=writable)
        yield store
    finally:
        engine.dispose()


def known_orgs(config: Config, store: Store) -> list[OrgConfig]:
    """The configured orgs, and those discovery last found (from the `organizations` table,
    without asking the API): what `status` and dry runs work from."""
    if config.discovery is None:
        return list(config.orgs)
    configured = {o.id for o in config.orgs}
    found = [config.discovered_org(row.org_id, row.name) for row in store.organizations()
             if row.origin == "discovered" and row.removed_at is None
             and row.org_id not in configured]
    return [*config.orgs, *found]


def credentials(
    config: Config, env: Mapping[str, str], org_ids: Sequence[str] = ()
) -> Credentials:
    """The tokens of the orgs named (all by default), read once from `env` and registered
    for scrubbing from every log line."""
    orgs = [o for o in config.orgs if not org_ids or o.id in org_ids]
    tokens = {org.id: resolve_token(config, org, env) for org in orgs}
    labels = {org.id: config.token_label(org) for org in orgs}
    discovery = config.discovery
    if discovery is not None:
        # the token that lists the organizations, and the token of the orgs it finds
        for key, name in ((ENTERPRISE, discovery.token_env), (ANY_ORG, discovery.org_token)):
            try:
                tokens[key] = resolve_token(config, OrgConfig(id="discovered", token_env=name),
                                            env)
            except ConfigError:
                raise ConfigError(
                    f"[discovery] needs a token: set the environment variable {name} to a "
                    "Devin service-user token (cog_...); listing the organizations needs "
                    "the ManageOrganizations permission"
                ) from None
            labels[key] = f"${name}"
    register_secrets(*tokens.values())
    return Credentials(tokens, labels)


@contextmanager
def open_collector(
    config: Config,
    env: Mapping[str, str],
    *,
    org_ids: Sequence[str] = (),
    concurrency: int | None = None,
    on_attempt: AttemptHook | None = None,
) -> Iterator[Collector]:
    """A collector for `config`: tokens first (a missing one is a usage error before the
    database is touched), then the checked store, then the client."""
    tokens = credentials(config, env, org_ids)
    with open_store(config) as store, make_client(
        config, tokens, concurrency=concurrency, on_attempt=on_attempt,
        learned_rates={name: rate for name, (rate, _) in store.learned_rates().items()},
    ) as client:
        collector = Collector(config, store, client)
        collector.refresh_orgs()
        yield collector
