"""`collector collect`: the open window and the one before it, once, for every target."""

from __future__ import annotations

import sys
import time

import click

from collector.cli.support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
    print_report,
)


@click.command()
@pass_context
def collect(obj: Context) -> None:
    """Fetch the current and the previous window (or bucket) of every source, org and
    segment, once."""
    from collector.assembly import open_collector
    from collector.targets import Target, chunks, targets_from_config
    from collector.windows import Window

    with errors_to_exit_codes():
        config = obj.config()
        now = time.time()
        with open_collector(config, obj.env) as collector:
            work: list[tuple[Target, Window]] = []
            for target in targets_from_config(config, orgs=collector.orgs):
                current = target.calendar.at(now)
                previous = target.calendar.at(current.start - 1)
                work += chunks(target, [previous, current])
            report = collector.collect(work)
    print_report(report, "collect")
    sys.exit(EXIT_OK if report.complete else EXIT_PARTIAL)
