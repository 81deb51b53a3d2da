"""The one assembly point: a collector (store, client, policy) built from a configuration.

`collector collect`, `collector backfill`, `collector run` and the demo all open a collector
here and differ only in the windows they hand `Collector.collect`. Tokens are read from the
environment once, registered for scrubbing from every log line before any request is made,
and kept only inside the client's `Credentials`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from collector import db
from collector.client import AttemptHook, Credentials, DevinClient, make_client
from collector.collection import Policy, Report, Work, run_collection
from collector.config import Config, resolve_token
from collector.logs import register_secrets
from collector.outcomes import Outcome
from collector.store import Store
from collector.throttle import Clock


@dataclass
class Collector:
    """What the commands collect with. Built by `open_collector`; tests build one from
    parts of their own (a client against the simulator, a store on a test database)."""

    config: Config
    store: Store
    client: DevinClient

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


def credentials(
    config: Config, env: Mapping[str, str], org_ids: Sequence[str] = ()
) -> Credentials:
    """The tokens of the orgs named (all by default), read once from `env` and registered
    for scrubbing from every log line."""
    orgs = [o for o in config.orgs if not org_ids or o.id in org_ids]
    tokens = {org.id: resolve_token(config, org, env) for org in orgs}
    register_secrets(*tokens.values())
    return Credentials(tokens, {org.id: config.token_label(org) for org in orgs})


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
        config, tokens, concurrency=concurrency, on_attempt=on_attempt
    ) as client:
        store.record_orgs([(org.id, org.name) for org in config.orgs], time.time())
        yield Collector(config, store, client)
