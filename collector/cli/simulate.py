"""`collector simulate` and `collector demo`: the local simulator, and the whole flow
against it."""

from __future__ import annotations

import sys

import click

from collector.cli.support import Context, errors_to_exit_codes, pass_context


@click.command()
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
@click.option(
    "--burst", type=float, default=None,
    help="Requests a token may send at once under --rate-limit (default: the rate).",
)
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
    burst: float | None,
    sessions_per_hour: float,
) -> None:
    """Serve a local simulator of the session-metrics endpoint (synthetic, seeded data).

    It serves the orgs of the configuration (--config, $COLLECTOR_CONFIG or ./collector.toml)
    when there is one, so `collector collect` works against it as configured."""
    from collector.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path
    from collector.sim import DEFAULT_TOKEN, SyntheticData, TokenGrant, serve

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
            burst=burst,
            token_envs=token_envs,
            orgs_from=source,
        )


@click.command()
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

