"""The command line: thin glue from flags to the collector, errors to exit codes.

Exit codes: 0 everything succeeded, 1 some windows failed or were deferred (each failure is
listed) or a health check failed, 2 usage, configuration or schema errors.

Each command lives in a module of its own and imports what it needs when it runs, so a
command loads only its own dependencies (`collector status` never imports httpx's client
or APScheduler).
"""

from __future__ import annotations

import click

from collector.cli.backfill import backfill
from collector.cli.check import check
from collector.cli.collect import collect
from collector.cli.db import db
from collector.cli.report import report
from collector.cli.run import run
from collector.cli.simulate import demo, simulate
from collector.cli.status import status
from collector.cli.support import Context
from collector.logs import configure_logging

__all__ = ["main"]


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
    """Collect Devin API v3 metrics into SQL tables you own."""
    configure_logging(log_format or "text", "DEBUG" if verbose else "WARNING")
    ctx.obj = Context(config_flag, log_format, verbose)


for command in (db, collect, run, status, backfill, check, simulate, demo, report):
    main.add_command(command)
