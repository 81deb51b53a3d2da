"""`collector db`: create, upgrade, downgrade and inspect the schema."""

from __future__ import annotations

import sys

import click

from collector.cli.support import EXIT_PARTIAL, Context, errors_to_exit_codes, pass_context
from collector.errors import ConfigError


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_context
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or upgrade the schema to the newest migration."""
    from collector import db as dbmod
    from collector import migrate
    from collector.assembly import open_engine

    with errors_to_exit_codes():
        engine = open_engine(obj.config())
        try:
            dbmod.require_writable(engine)
            _require_revision(revision)
            before = dbmod.current_revision(engine)
            migrate.upgrade(engine, revision)
            after = dbmod.current_revision(engine)
            # Alembic takes a revision the database is past as done: what going back undoes
            past = before == after and bool(migrate.plan_downgrade(engine, revision).undone)
        finally:
            engine.dispose()
    if past:
        click.echo(f"database at revision {after}, already past {revision}: nothing to "
                   f"upgrade (`collector db downgrade {revision}` goes back)")
    elif before == after:
        click.echo(f"database already at revision {after or 'base'}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("downgrade")
@click.argument("revision")
@click.option(
    "--yes", is_flag=True, help="Do not ask: a downgrade drops tables or columns and their data."
)
@pass_context
def db_downgrade(obj: Context, revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION ("base" removes everything). Asks first, or --yes,
    when the downgrade drops data."""
    from collector import db as dbmod
    from collector import migrate
    from collector.assembly import open_engine

    with errors_to_exit_codes():
        engine = open_engine(obj.config())
        try:
            dbmod.require_writable(engine)
            _require_revision(revision)
            plan = migrate.plan_downgrade(engine, revision)
            current = plan.current
            if not plan.undone:
                click.echo(f"database already at revision {current or 'base'}: nothing to "
                           "downgrade")
                return
            where = engine.url.render_as_string(hide_password=True)
            loses = (
                "drops every table of the collector and all the data in them"
                if revision == "base"
                else "drops tables or columns, and the data in them"
            )
            if plan.deletes_data and not yes:
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
            migrate.downgrade(engine, revision)
            click.echo(f"database at revision {dbmod.current_revision(engine) or 'base'}")
        finally:
            engine.dispose()


@db.command("current")
@pass_context
def db_current(obj: Context) -> None:
    """Print the schema revision of the database and of this collector."""
    from collector import db as dbmod
    from collector import migrate
    from collector.assembly import open_engine

    with errors_to_exit_codes():
        engine = open_engine(obj.config())
        try:
            current = dbmod.current_revision(engine)
        finally:
            engine.dispose()
        head = migrate.head_revision()
    click.echo(f"database: {current or 'empty'}; collector: {head}")
    if current != head:
        sys.exit(EXIT_PARTIAL)


def _require_revision(revision: str) -> None:
    if not revision.strip():
        raise ConfigError("the revision is empty: name one (0007, head, base); "
                          "`collector db current` shows where the database is")
