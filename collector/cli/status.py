"""`collector status`: freshness and completeness per source, org and segment."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from collector.cli.support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
    when,
)
from collector.errors import ConfigError
from collector.windows import for_people, format_duration, parse_duration

if TYPE_CHECKING:
    from collector.status import TargetStatus


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--max-age",
    metavar="DURATION",
    default=None,
    help="Exit 1 when a target's last success is older than this (default: 3 x its "
    "source's interval).",
)
@pass_context
def status(obj: Context, as_json: bool, max_age: str | None) -> None:
    """Per source, org and segment: newest window, staleness, collected, unsettled, missing,
    failing.

    Each line starts with a flag: ok; WARN when windows are failing (listed below it) but the
    last success is recent; STALE when the last success is older than --max-age (exit 1).
    Windows missing inside the catch-up horizon come with the backfill command that fetches
    them. --json prints timestamps as ISO 8601 UTC and staleness in whole seconds.
    """
    from collector.assembly import known_orgs, open_store
    from collector.status import iso, target_status
    from collector.targets import targets_from_config
    from collector.windows import to_timestamp

    with errors_to_exit_codes():
        config = obj.config()
        try:
            limit = parse_duration(max_age) if max_age else None
        except ValueError as exc:
            raise ConfigError(f"--max-age: {exc}") from None
        with open_store(config, writable=False) as store:  # a read-only replica will do
            every = known_orgs(config, store)
            rows = target_status(
                store,
                targets_from_config(config, orgs=every),
                now=time.time(),
                horizon=config.schedule.catchup_horizon,
                max_age=limit,
            )
            learned = store.learned_rates()
            removed = [o for o in store.organizations() if o.removed_at is not None]
    labels = {org.id: config.token_label(org) for org in every}
    rates = {org_id: learned.get(label) for org_id, label in labels.items()}
    if as_json:
        click.echo(json.dumps([_with_rate(r.as_dict(), labels, rates) for r in rows], indent=2))
    else:
        for r in rows:
            newest = when(r.newest_window)
            age = "never" if r.staleness is None else f"{for_people(r.staleness)} ago"
            if r.stale:
                age += f" (max age {format_duration(int(r.max_age))})"
            click.echo(
                f"{r.flag:5} {_name(r)}: newest window {newest}, last success "
                f"{age}; {r.collected} collected, {r.unsettled} unsettled, {r.missing} missing, "
                f"{r.failing} failing"
            )
            for f in r.failing_windows:
                click.echo(f"      {when(f.window_start)}: {f.error} ({f.failures}x)")
        missing = sum(r.missing for r in rows)
        since = min((r.backfill_since for r in rows if r.backfill_since is not None),
                    default=None)
        if since is not None:
            click.echo(
                f"{missing} window(s) inside the catch-up horizon were never collected; "
                f"fetch them with: collector backfill --since {iso(since)}"
            )
        for name, (rate, at) in sorted(learned.items()):
            click.echo(f"rate of {name}: {rate:g} request(s)/s, learned {when(at)}")
        for org in removed:
            click.echo(f"removed {org.org_id}: no longer {_gone[org.origin]} since "
                       f"{when(to_timestamp(org.removed_at))}; its data is kept")
    sys.exit(EXIT_PARTIAL if any(r.stale for r in rows) else EXIT_OK)


_gone = {"config": "in the configuration", "discovered": "listed by the API"}


def _with_rate(
    row: dict[str, Any], labels: dict[str, str], rates: dict[str, tuple[float, int] | None]
) -> dict[str, Any]:
    """The status row, with the rate its token was last seen to run at (or null)."""
    from collector.status import iso

    found = rates.get(row["org_id"])
    row["token_rate"] = None if found is None else {
        "token_env": labels[row["org_id"]],
        "requests_per_second": found[0],
        "learned_at": iso(found[1]),
    }
    return row


def _name(status: TargetStatus) -> str:
    name = f"{status.org_id}/{status.segment}"
    return name if status.source == "sessions" else f"{name} {status.source}"
