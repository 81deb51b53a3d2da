"""`collector simulate` and `collector demo`: the local simulator, and the whole flow
against it."""

from __future__ import annotations

import fnmatch
import re
import sys
from typing import TYPE_CHECKING

import click

from collector.cli.support import Context, errors_to_exit_codes, pass_context
from collector.config_fields import ORG_ID

if TYPE_CHECKING:
    from collector.config import Config


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
    "synthetic orgs its [discovery] finds if it lists none, else any org id).",
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
    when there is one, so `collector collect` works against it as configured; a
    configuration with [discovery] and no [[orgs]] gets synthetic orgs its [discovery]
    finds in the enterprise's list."""
    from collector.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path
    from collector.sim import DEFAULT_TOKEN, SyntheticData, TokenGrant, serve

    with errors_to_exit_codes():
        accepted = tokens or (obj.env.get("SIMULATOR_TOKEN") or DEFAULT_TOKEN,)
        served: tuple[str, ...] | None = orgs or None
        token_envs = ["DEVIN_API_TOKEN"]
        source: str | None = None
        explicit = obj.config_flag or obj.env.get(CONFIG_ENV)
        names: dict[str, str] | None = None
        if explicit or (not orgs and DEFAULT_CONFIG_PATH.exists()):
            config = obj.config()
            token_envs = [config.token_env_for(o) for o in config.orgs]
            if config.discovery is not None:
                token_envs += [config.discovery.token_env, config.discovery.org_token]
            if not orgs:
                served = tuple(o.id for o in config.orgs)
                source = str(config_path(obj.config_flag, obj.env))
                if not served and config.discovery is not None:
                    names = discoverable_orgs(config)
                    served = tuple(names)
                    source = f"the [discovery] of {source}: synthetic orgs it finds"
        serve(
            host,
            port,
            data=SyntheticData(seed=seed, sessions_per_hour=sessions_per_hour),
            orgs=served,
            org_names=names,
            tokens={t: TokenGrant(None) for t in accepted},
            latency=latency,
            rate_limit=rate_limit,
            burst=burst,
            token_envs=token_envs,
            orgs_from=source,
        )


#: What a synthetic org's name or id is made of, in order.
_WORDS = ("alpha", "beta", "gamma")
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def discoverable_orgs(config: Config) -> dict[str, str]:
    """Synthetic orgs (id -> name) for a configuration without `[[orgs]]` whose
    `[discovery]` would find them: each `include` glob filled in with a few words (a
    filled glob starting with ``org-`` is an id, else a name), kept when `[discovery]` takes
    them (`exclude` leaves some out). When none is taken: ``org-alpha``, ``-beta`` and
    ``-gamma``."""
    from collector.discovery import select

    assert config.discovery is not None
    candidates: dict[str, str] = {}
    for glob in config.discovery.include:
        for word in _WORDS:
            filled = _fill(glob, word)
            if filled.startswith("org-") and ORG_ID.match(filled) and ".." not in filled:
                candidates.setdefault(filled, word.title())
            else:
                name = _fill(glob, word.title(), spaced=True).strip() or word.title()
                slug = "-".join(re.findall(r"[a-z0-9]+", name.lower()))
                candidates.setdefault(f"org-{slug}", name)
    listed = [{"org_id": k, "name": v} for k, v in candidates.items()]
    taken = {org.id: org.name or org.id for org in select(config, listed)}
    return taken or {f"org-{word}": word.title() for word in _WORDS}


def _fill(glob: str, word: str, *, spaced: bool = False) -> str:
    """A string `glob` matches: every ``*`` is `word` (set off by spaces from letters and
    digits when `spaced`), every ``?`` and ``[...]`` one character it allows."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            if i == 0 or glob[i - 1] != "*":  # ** is one *
                before = spaced and bool(out) and out[-1][-1:].isalnum()
                after = spaced and glob[i + 1 : i + 2].isalnum()
                out.append(" " * before + word + " " * after)
        elif char == "?":
            out.append("x")
        elif char == "[" and (end := glob.find("]", i + 2)) != -1:
            klass = glob[i : end + 1]
            out.append(next((c for c in _CHARS if fnmatch.fnmatchcase(c, klass)), "x"))
            i = end
        else:
            out.append(char)
        i += 1
    return "".join(out)


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

