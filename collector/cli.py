"""The command line: thin glue from flags to the collector, errors to exit codes.

Exit codes: 0 everything succeeded, 1 some windows failed (each is listed), 2 usage,
configuration or schema errors.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import click

from collector.collect import Policy, Report, run_collection
from collector.config import Config, config_path, load_config
from collector.errors import CollectorError, ConfigError, SchemaOutOfDateError
from collector.logs import configure_logging

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    config_flag: str | None
    log_format: str | None
    verbose: bool
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(config_path(self.config_flag, self.env), self.env)
            configure_logging(
                self.log_format or self._config.logging.format,
                "DEBUG" if self.verbose else self._config.logging.level,
            )
        return self._config


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """Map the collector's errors to exit codes with a one-paragraph message."""
    try:
        yield
    except (ConfigError, SchemaOutOfDateError) as exc:
        fail(str(exc), EXIT_USAGE)
    except CollectorError as exc:
        fail(str(exc), EXIT_PARTIAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_flag",
    metavar="PATH",
    help="Configuration file (default: $COLLECTOR_CONFIG, else ./collector.toml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as plain text or JSON (default: [logging].format).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.version_option(package_name="collector")
@click.pass_context
def main(
    ctx: click.Context, config_flag: str | None, log_format: str | None, verbose: bool
) -> None:
    """Collect Devin API v3 session metrics into SQL tables you own."""
    configure_logging(log_format or "text", "DEBUG" if verbose else "WARNING")
    ctx.obj = Context(config_flag, log_format, verbose)


pass_context = click.make_pass_decorator(Context)


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_context
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or upgrade the schema to the newest migration."""
    from collector import db as dbmod

    with errors_to_exit_codes():
        engine = _engine(obj.config())
        try:
            before = dbmod.current_revision(engine)
            dbmod.upgrade(engine, revision)
            after = dbmod.current_revision(engine)
        finally:
            engine.dispose()
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("downgrade")
@click.argument("revision")
@pass_context
def db_downgrade(obj: Context, revision: str) -> None:
    """Downgrade the schema to REVISION ("base" removes everything)."""
    from collector import db as dbmod

    with errors_to_exit_codes():
        engine = _engine(obj.config())
        try:
            dbmod.downgrade(engine, revision)
            click.echo(f"database at revision {dbmod.current_revision(engine) or 'base'}")
        finally:
            engine.dispose()


@db.command("current")
@pass_context
def db_current(obj: Context) -> None:
    """Print the schema revision of the database and of this collector."""
    from collector import db as dbmod

    with errors_to_exit_codes():
        engine = _engine(obj.config())
        try:
            current = dbmod.current_revision(engine)
        finally:
            engine.dispose()
        head = dbmod.head_revision()
    click.echo(f"database: {current or 'empty'}; collector: {head}")
    if current != head:
        sys.exit(EXIT_PARTIAL)


@main.command()
@pass_context
def collect(obj: Context) -> None:
    """Fetch the current and the previous window for every org and segment, once."""
    from collector.targets import targets_from_config
    from collector.windows import due_now

    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        targets = targets_from_config(config)
        work = [(t, w) for t in targets for w in due_now(now, config.windows.seconds)]
        report = _collect(obj, config, work)
    _print_report(report, "collect")
    sys.exit(EXIT_OK if report.ok else EXIT_PARTIAL)


def _engine(config: Config) -> Any:
    from collector.db import create_engine_for
    from collector.windows import parse_duration

    return create_engine_for(
        config.database.url, busy_timeout=parse_duration(config.database.busy_timeout)
    )


def _collect(obj: Context, config: Config, work: list[Any]) -> Report:
    from collector.client import make_client
    from collector.db import require_current_schema
    from collector.logs import register_secrets
    from collector.store import Store

    org_ids = tuple(sorted({t.org_id for t, _ in work}))
    client = make_client(config, obj.env, org_ids=org_ids)
    register_secrets(*(obj.env.get(config.token_env_for(config.org(o)), "") for o in org_ids))
    engine = _engine(config)
    try:
        require_current_schema(engine)
        with client:
            return run_collection(
                client,
                Store(engine),
                work,
                policy=Policy.from_config(config),
                concurrency=config.api.concurrency,
            )
    finally:
        engine.dispose()


def _print_report(report: Report, what: str) -> None:
    total = report.collected + len(report.failed)
    click.echo(
        f"{what}: {report.collected} of {total} window(s) collected in {report.duration:.1f}s"
    )
    if report.failed:
        click.echo(f"{len(report.failed)} window(s) failed:", err=True)
        for failure in report.failed[:50]:
            click.echo(f"  {failure.target} {failure.window}: {failure.error}", err=True)
        if len(report.failed) > 50:
            click.echo(f"  ... and {len(report.failed) - 50} more", err=True)
        click.echo("They stay due: the next run fetches them again.", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option("--org", "orgs", multiple=True, help="Known org id (repeatable).")
@click.option(
    "--token",
    "tokens",
    multiple=True,
    help="Accepted bearer token (repeatable; default: $SIMULATOR_TOKEN or cog_sim_token).",
)
@click.option("--latency", type=float, default=0.0, help="Seconds added to every request.")
@click.option("--rate-limit", type=float, default=None, help="Requests per second per token.")
@click.option("--sessions-per-hour", type=float, default=6.0, show_default=True)
def simulate(
    host: str,
    port: int,
    seed: int,
    orgs: tuple[str, ...],
    tokens: tuple[str, ...],
    latency: float,
    rate_limit: float | None,
    sessions_per_hour: float,
) -> None:
    """Serve a local simulator of the session-metrics endpoint (synthetic, seeded data)."""
    from collector.simdata import SyntheticData
    from collector.simulator import TokenGrant, serve

    accepted = tokens or (os.environ.get("SIMULATOR_TOKEN") or "cog_sim_token",)
    serve(
        host,
        port,
        data=SyntheticData(seed=seed, sessions_per_hour=sessions_per_hour),
        orgs=orgs or ("org-alpha", "org-beta"),
        tokens={t: TokenGrant(None) for t in accepted},
        latency=latency,
        rate_limit=rate_limit,
    )


@main.command()
@click.option(
    "--database",
    default="collector-demo.db",
    show_default=True,
    help="SQLite file the demo writes (created if missing).",
)
@click.option("--days", type=click.IntRange(1, 30), default=3, show_default=True)
def demo(database: str, days: int) -> None:
    """Run the whole flow against a local simulator: no token or network needed."""
    from collector.demo import run_demo

    with errors_to_exit_codes():
        sys.exit(run_demo(database, days))
