"""What every command shares: the lazily loaded configuration, exit codes, reports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import click

from collector.config import Config, config_path, load_config
from collector.errors import CollectorError, ConfigError, SchemaOutOfDateError
from collector.logs import configure_logging, held_logs, replay_logs

if TYPE_CHECKING:
    from collector.collection import Report
    from collector.outcomes import Failed

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


@dataclass
class Context:
    config_flag: str | None
    log_format: str | None
    verbose: bool
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            # what loading logs (its warnings) waits for the logging the file asks for
            with held_logs() as held:
                self._config = load_config(config_path(self.config_flag, self.env), self.env)
            configure_logging(
                self.log_format or self._config.logging.format,
                "DEBUG" if self.verbose else self._config.logging.level,
            )
            replay_logs(held)
        return self._config


def when(ts: int | None) -> str:
    """Unix seconds as people read them in output: ``2026-11-20 14:00Z`` (or ``none``)."""
    if ts is None:
        return "none"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


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


pass_context = click.make_pass_decorator(Context)


def print_report(report: Report, what: str, *, forced: bool = False) -> None:
    """The run's counts on stdout; on stderr each failure once with its target and window,
    an org's access error once for all its windows, and the advice that fits each (`forced`:
    a backfill with --force, whose failed windows may have been settled before)."""
    total = report.collected + report.failed_count + report.deferred
    click.echo(
        f"{what}: {report.collected} of {total} window(s) collected in {report.duration:.2f}s"
    )
    if report.deferred:
        click.echo(
            f"{report.deferred} window(s) deferred, not failed (the first: "
            f"{report.deferred_reason}); they stay due, and running again fetches them",
            err=True,
        )
    if not report.failed_count:
        return
    denied: dict[str, list[Failed]] = {}
    others: list[Failed] = []
    for failure in report.failed:
        if failure.access_denied:
            denied.setdefault(failure.target.org_id, []).append(failure)
        else:
            others.append(failure)
    click.echo(f"{report.failed_count} window(s) failed:", err=True)
    for failures in denied.values():
        click.echo(f"  {failures[0].error} ({len(failures)} window(s))", err=True)
    for failure in others[:20]:
        click.echo(f"  {failure.target} {failure.window}: {failure.error}", err=True)
    if len(others) > 20:
        click.echo(f"  ... and {len(others) - 20} more", err=True)
    if denied:
        click.echo(
            "Fix the token, permission or org id named above, then run again.", err=True
        )
    if others or report.failed_count > len(report.failed):
        these = "The other failures are" if denied else "These failures are"
        click.echo(
            f"{these} transient. A window collected before keeps the values stored then; "
            "the rest stay due: running again without --force fetches them (and only them)."
            if forced else
            f"{these} transient: those windows stay due, and running again fetches them "
            "(and only them).", err=True,
        )
