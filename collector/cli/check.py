"""`collector check`: what each configured token can read, before anyone waits for data."""

from __future__ import annotations

import json
import sys

import click

from collector.cli.support import (
    EXIT_OK,
    EXIT_PARTIAL,
    Context,
    errors_to_exit_codes,
    pass_context,
)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def check(obj: Context, as_json: bool) -> None:
    """Try each token and each org's sources once; say what works and how to fix the rest.

    One GET /v3/self per token variable (who the token is), then one request per org and
    source over its last closed window (or bucket). Each line starts with ok or FAIL, then
    the token's variable, the org, the source and what happened (for a FAIL, the fix).
    Writes nothing and never opens the database. Exit 0 when every check passes, 1
    otherwise. --json prints a list of objects: kind ("token" or "source"), token_env,
    org_id, source, ok, detail, fix.
    """
    from collector.check import run_check

    with errors_to_exit_codes():
        report = run_check(obj.config(), obj.env)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in report.results], indent=2))
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
    else:
        rows = [
            (
                "ok" if r.ok else "FAIL",
                r.token_env,
                r.org_id or "-",
                r.source or "token",
                r.detail if r.ok or not r.fix else f"{r.detail}. Fix: {r.fix}",
            )
            for r in report.results
        ]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            click.echo("  ".join([*cells, row[4]]))
        passed = sum(r.ok for r in report.results)
        click.echo(f"{passed} of {len(report.results)} check(s) passed")
        for note in report.notes:
            click.echo(f"note: {note}")
    sys.exit(EXIT_OK if report.ok else EXIT_PARTIAL)
