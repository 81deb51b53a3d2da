"""Wiring shared by the commands: an engine, a client and a store from a configuration."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from collector.client import AttemptHook, DevinClient, make_client
from collector.config import Config, resolve_token
from collector.db import create_engine_for
from collector.logs import register_secrets
from collector.windows import parse_duration


def open_engine(config: Config) -> Engine:
    return create_engine_for(
        config.database.url, busy_timeout=parse_duration(config.database.busy_timeout)
    )


def open_client(
    config: Config,
    env: Mapping[str, str],
    *,
    org_ids: tuple[str, ...] = (),
    concurrency: int | None = None,
    on_attempt: AttemptHook | None = None,
) -> DevinClient:
    """The API client for the orgs named (all by default); their tokens are registered for
    scrubbing from every log line before any request is made."""
    orgs = [o for o in config.orgs if not org_ids or o.id in org_ids]
    register_secrets(*(resolve_token(config, o, env) for o in orgs))
    return make_client(
        config,
        env,
        org_ids=tuple(o.id for o in orgs),
        concurrency=concurrency,
        on_attempt=on_attempt,
    )
