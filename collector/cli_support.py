"""What every command shares: the lazily loaded configuration, exit codes, reports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import click

from collector.collect import Report
from collector.config import Config, config_path, load_config
from collector.errors import CollectorError, ConfigError, SchemaOutOfDateError
from collector.logs import configure_logging

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


pass_context = click.make_pass_decorator(Context)


def print_report(report: Report, what: str) -> None:
    total = report.collected + report.failed_count
    click.echo(
        f"{what}: {report.collected} of {total} window(s) collected in {report.duration:.2f}s"
    )
    if report.failed_count:
        click.echo(f"{report.failed_count} window(s) failed:", err=True)
        for failure in report.failed[:20]:
            click.echo(f"  {failure.target} {failure.window}: {failure.error}", err=True)
        if report.failed_count > 20:
            click.echo(f"  ... and {report.failed_count - 20} more", err=True)
        click.echo("They stay due: running again fetches them (and only them).", err=True)
