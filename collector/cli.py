"""The command line: thin glue from flags to the collector, errors to exit codes.

Exit codes: 0 everything succeeded, 1 some windows failed (each is listed) or a health check
failed, 2 usage, configuration or schema errors.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

import click

from collector import db as dbmod
from collector.app import open_client, open_engine
from collector.cli_backfill import backfill
from collector.cli_support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
    print_report,
)
from collector.collect import Policy, run_collection
from collector.errors import ConfigError
from collector.logs import configure_logging
from collector.store import Store, owner_alive
from collector.targets import targets_from_config
from collector.windows import due_now, format_duration, parse_duration


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


main.add_command(backfill)


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_context
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or upgrade the schema to the newest migration."""
    with errors_to_exit_codes():
        engine = open_engine(obj.config())
        try:
            dbmod.require_writable(engine)
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
@click.option(
    "--yes", is_flag=True, help="Do not ask: a downgrade drops tables or columns and their data."
)
@pass_context
def db_downgrade(obj: Context, revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION ("base" removes everything). Asks first, or --yes."""
    with errors_to_exit_codes():
        engine = open_engine(obj.config())
        try:
            current = dbmod.current_revision(engine)
            where = engine.url.render_as_string(hide_password=True)
            loses = (
                "drops every table of the collector and all the data in them"
                if revision == "base"
                else "drops tables or columns, and the data in them"
            )
            if current is not None and not yes:
                if not sys.stdin.isatty():
                    raise ConfigError(
                        f"downgrading {where} from {current} to {revision} {loses}: "
                        "pass --yes to do it (there is no terminal to ask)"
                    )
                if not click.confirm(
                    f"Downgrade {where} from {current} to {revision}? This {loses}",
                    default=False,
                ):
                    click.echo("nothing changed", err=True)
                    sys.exit(EXIT_PARTIAL)
            dbmod.downgrade(engine, revision)
            click.echo(f"database at revision {dbmod.current_revision(engine) or 'base'}")
        finally:
            engine.dispose()


@db.command("current")
@pass_context
def db_current(obj: Context) -> None:
    """Print the schema revision of the database and of this collector."""
    with errors_to_exit_codes():
        engine = open_engine(obj.config())
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
    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        work = [
            (target, window)
            for target in targets_from_config(config)
            for window in due_now(now, config.windows.seconds)
        ]
        client = open_client(config, obj.env)
        engine = open_engine(config)
        try:
            dbmod.require_current_schema(engine)
            store = Store(engine)
            store.check_window_size(config.windows.seconds)
            with client:
                report = run_collection(
                    client,
                    store,
                    work,
                    policy=Policy.from_config(config),
                    concurrency=config.api.concurrency,
                )
        finally:
            engine.dispose()
    print_report(report, "collect")
    sys.exit(EXIT_OK if report.complete else EXIT_PARTIAL)


@main.command()
@pass_context
def run(obj: Context) -> None:
    """Run the daemon: poll every org on [schedule].interval until SIGTERM or SIGINT."""
    from collector.daemon import Daemon, sqlite_single_daemon
    from collector.metrics import Metrics

    with errors_to_exit_codes():
        config = obj.config()
        engine = open_engine(config)
        dbmod.require_current_schema(engine)
        metrics = Metrics()
        client = open_client(config, obj.env, on_attempt=metrics.attempt)
        store = Store(engine)
        store.check_window_size(config.windows.seconds)
        with sqlite_single_daemon(engine):
            # claims left behind by a process of this host that was killed (a daemon or a
            # backfill); those of live processes, such as a backfill beside it, stay
            store.release_orphans(time.time(), owner_alive)
            if config.metrics.port is not None:
                metrics.serve(config.metrics.host, config.metrics.port)
            daemon = Daemon(config, client, store, metrics=metrics)
            clean = daemon.serve()
            metrics.close()
        if not clean:
            # A run is stuck past the grace period: leave without it. Its transaction was
            # never committed, so the database rolls it back; the windows stay due.
            sys.stderr.flush()
            os._exit(EXIT_OK)
        client.close()
        engine.dispose()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--max-age",
    metavar="DURATION",
    default=None,
    help="Exit 1 when an org's last success is older than this (default: 3 x interval).",
)
@pass_context
def status(obj: Context, as_json: bool, max_age: str | None) -> None:
    """Per org and segment: newest window, staleness, collected, unsettled, missing, failing.

    Each line starts with a flag: ok; WARN when windows are failing (listed below it) but the
    last success is recent; STALE when the last success is older than --max-age (exit 1).
    Windows missing inside the catch-up horizon come with the backfill command that fetches
    them. --json prints timestamps as ISO 8601 UTC and staleness in whole seconds.
    """
    from collector.status import ago, iso, target_status

    with errors_to_exit_codes():
        config = obj.config()
        try:
            limit = parse_duration(max_age) if max_age else 3 * parse_duration(
                config.schedule.interval
            )
        except ValueError as exc:
            raise ConfigError(f"--max-age: {exc}") from None
        engine = open_engine(config)
        try:
            dbmod.require_current_schema(engine, writable=False)  # a read-only replica will do
            Store(engine).check_window_size(config.windows.seconds, record=False)
            rows = target_status(
                engine,
                targets_from_config(config),
                now=time.time(),
                size=config.windows.seconds,
                horizon=parse_duration(config.schedule.catchup_horizon),
                max_age=limit,
            )
        finally:
            engine.dispose()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        for r in rows:
            newest = _when(r.newest_window)
            age = "never" if r.staleness is None else f"{ago(r.staleness)} ago"
            if r.stale:
                age += f" (max age {format_duration(int(limit))})"
            click.echo(
                f"{r.flag:5} {r.org_id}/{r.segment}: newest window {newest}, last success "
                f"{age}; {r.collected} collected, {r.unsettled} unsettled, {r.missing} missing, "
                f"{r.failing} failing"
            )
            for f in r.failing_windows:
                click.echo(f"      {_when(f.window_start)}: {f.error} ({f.failures}x)")
        missing = sum(r.missing for r in rows)
        since = min((r.backfill_since for r in rows if r.backfill_since is not None),
                    default=None)
        if since is not None:
            click.echo(
                f"{missing} window(s) inside the catch-up horizon were never collected; "
                f"fetch them with: collector backfill --since {iso(since)}"
            )
    sys.exit(EXIT_PARTIAL if any(r.stale for r in rows) else EXIT_OK)


def _when(ts: int | None) -> str:
    return "none" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="0 picks a free port.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option(
    "--org",
    "orgs",
    multiple=True,
    help="Known org id (repeatable; default: the configuration's orgs if there is one, "
    "else any org id).",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    help="Accepted bearer token (repeatable; default: $SIMULATOR_TOKEN or cog_sim_token).",
)
@click.option("--latency", type=float, default=0.0, help="Seconds added to every request.")
@click.option("--rate-limit", type=float, default=None, help="Requests per second per token.")
@click.option("--sessions-per-hour", type=float, default=6.0, show_default=True)
@pass_context
def simulate(
    obj: Context,
    host: str,
    port: int,
    seed: int,
    orgs: tuple[str, ...],
    tokens: tuple[str, ...],
    latency: float,
    rate_limit: float | None,
    sessions_per_hour: float,
) -> None:
    """Serve a local simulator of the session-metrics endpoint (synthetic, seeded data).

    It serves the orgs of the configuration (--config, $COLLECTOR_CONFIG or ./collector.toml)
    when there is one, so `collector collect` works against it as configured."""
    from collector.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path
    from collector.simdata import SyntheticData
    from collector.simulator import DEFAULT_TOKEN, TokenGrant, serve

    with errors_to_exit_codes():
        accepted = tokens or (obj.env.get("SIMULATOR_TOKEN") or DEFAULT_TOKEN,)
        served: tuple[str, ...] | None = orgs or None
        token_envs = ["DEVIN_API_TOKEN"]
        source: str | None = None
        explicit = obj.config_flag or obj.env.get(CONFIG_ENV)
        if explicit or (not orgs and DEFAULT_CONFIG_PATH.exists()):
            config = obj.config()
            token_envs = [config.token_env_for(o) for o in config.orgs]
            if not orgs:
                served = tuple(o.id for o in config.orgs)
                source = str(config_path(obj.config_flag, obj.env))
        serve(
            host,
            port,
            data=SyntheticData(seed=seed, sessions_per_hour=sessions_per_hour),
            orgs=served,
            tokens={t: TokenGrant(None) for t in accepted},
            latency=latency,
            rate_limit=rate_limit,
            token_envs=token_envs,
            orgs_from=source,
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
