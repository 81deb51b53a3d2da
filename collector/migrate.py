"""Alembic on the bundled migrations: upgrade, downgrade, what a downgrade would undo,
and errors that name the revisions there are. Alembic is imported only here, and only when
a command migrates (it costs a third of a second at every start)."""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from collector.db import current_revision, describe_error
from collector.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    """Alembic's configuration, pointing at the bundled migrations."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_migrations_directory()))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def _migrations_directory() -> Path:
    """The bundled migrations as a directory that outlives this call.

    Installed normally, that is the package's own directory. Otherwise (from a zip) the
    scripts are copied once to a temporary directory that is kept until the process exits:
    a path from `importlib.resources.as_file` is gone once its context closes, and Alembic
    reads the scripts long after.
    """
    global _extracted
    resource = files("collector.migrations")
    if isinstance(resource, Path) and resource.is_dir():
        return resource
    if _extracted is None or not _extracted.is_dir():
        target = Path(_keep.enter_context(TemporaryDirectory(prefix="collector-migrations-")))
        _copy_tree(resource, target)
        _extracted = target
    return _extracted


def _copy_tree(source: Traversable, target: Path) -> None:
    for item in source.iterdir():
        if item.is_dir():
            if item.name != "__pycache__":
                (target / item.name).mkdir()
                _copy_tree(item, target / item.name)
        else:
            (target / item.name).write_bytes(item.read_bytes())


_extracted: Path | None = None
_keep = ExitStack()
atexit.register(_keep.close)


def head_revision() -> str:
    """The newest migration, as Alembic reads it from the bundled scripts."""
    head = _scripts().get_current_head()
    if head is None:
        raise StorageError("no migrations are bundled with this installation")
    return head


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `engine`'s database."""
    from alembic import command

    _run(engine, command.upgrade, revision, "upgrade")


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, command.downgrade, revision, "downgrade")


#: Migrations whose downgrade only replaces views or drops indexes: undoing them loses no
#: data. Every other one (a migration added later too, until it is listed here) is taken to
#: drop tables or columns and the data in them.
_DOWNGRADE_KEEPS_DATA = frozenset({"0003", "0007"})


@dataclass(frozen=True)
class DowngradePlan:
    """What `collector db downgrade REVISION` would do to a database at `current`."""

    current: str | None
    #: The migrations undone, newest first; empty when the database is already there.
    undone: tuple[str, ...]

    @property
    def deletes_data(self) -> bool:
        return any(revision not in _DOWNGRADE_KEEPS_DATA for revision in self.undone)


def plan_downgrade(engine: Engine, revision: str) -> DowngradePlan:
    """The migrations a downgrade of `engine`'s database to `revision` undoes, worked out
    the way Alembic works them out, without touching the database. `ConfigError` names a
    revision that does not exist or is not below the database's, with the known ones."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    current = current_revision(engine)
    scripts = _scripts()
    try:
        # the scripts `alembic downgrade` runs: from `current` down to `revision`
        steps = list(scripts.iterate_revisions(current, revision, select_for_downgrade=True))
    except (RevisionError, CommandError):
        # Alembic's own words here name a script by its message; ours name the revisions
        newer = f"{revision} is not below {current or 'an empty database'}"
        raise _revision_error(scripts, revision, "downgrade", current, newer) from None
    return DowngradePlan(current, tuple(script.revision for script in steps))


def _run(engine: Engine, action: Any, revision: str, verb: str) -> None:
    from alembic.util import CommandError

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            action(cfg, revision)
    except CommandError as exc:
        raise _revision_error(_scripts(), revision, verb, current_revision(engine),
                              str(exc)) from None
    except SQLAlchemyError as exc:
        raise StorageError(f"migration failed: {describe_error(exc)}") from None


def _revision_error(
    scripts: ScriptDirectory, revision: str, verb: str, current: str | None, reason: str
) -> ConfigError:
    """`ConfigError` for a migration target Alembic refused: unknown, or the wrong way."""
    from alembic.util import CommandError

    newest = scripts.get_current_head()
    known = [r.revision for r in reversed(list(scripts.walk_revisions()))]
    listing = f"base (no schema), {', '.join(known)} and head (= {newest})"
    try:
        scripts.get_revision(revision)
    except CommandError:
        return ConfigError(
            f"there is no revision {revision!r} to {verb} to: the known revisions are "
            f"{listing}"
        )
    state = f"is at revision {current}" if current else "has no collector schema"
    reason = " ".join(reason.split())
    fix = (f"a downgrade only goes back, to an older revision: `collector db upgrade "
           f"--revision {revision}` goes forward" if verb == "downgrade"
           else f"`collector db downgrade {revision}` goes back")
    return ConfigError(
        f"cannot {verb} to {revision}: the database {state} ({reason}); {fix}. The known "
        f"revisions are {listing}"
    )
