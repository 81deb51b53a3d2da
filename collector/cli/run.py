"""`collector run`: the daemon, until SIGTERM or SIGINT."""

from __future__ import annotations

import os
import sys
import time

import click

from collector.cli.support import EXIT_OK, Context, errors_to_exit_codes, pass_context


@click.command()
@pass_context
def run(obj: Context) -> None:
    """Run the daemon: poll every org on [schedule].interval until SIGTERM or SIGINT."""
    from collector.assembly import open_collector
    from collector.daemon import Daemon, sqlite_single_daemon
    from collector.ledger import owner_alive
    from collector.prometheus import Metrics

    with errors_to_exit_codes():
        config = obj.config()
        metrics = Metrics()
        with open_collector(config, obj.env, on_attempt=metrics.attempt) as collector:
            store = collector.store
            with sqlite_single_daemon(store.engine):
                # claims left behind by a process of this host that was killed (a daemon or
                # a backfill); those of live processes, such as a backfill beside it, stay
                store.release_orphans(time.time(), owner_alive)
                if config.metrics.port is not None:
                    metrics.serve(config.metrics.host, config.metrics.port)
                clean = Daemon(collector, metrics=metrics).serve()
                metrics.close()
            if not clean:
                # A run is stuck past the grace period: leave without it. Its transaction
                # was never committed, so the database rolls it back; the windows stay due.
                sys.stderr.flush()
                os._exit(EXIT_OK)
