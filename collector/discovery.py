"""Organizations found by themselves: the enterprise's list, filtered by `[discovery]`.

`discover` asks the API (``GET /v3/enterprise/organizations``, every page) through the
client handed in; `select` is the pure filter: globs on id or name, ids the configuration
already names left to their own `[[orgs]]` settings, and ids the collector cannot use
refused with a warning.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence

from collector.client import DevinClient
from collector.config import Config, OrgConfig
from collector.config_fields import ORG_ID

log = logging.getLogger("collector.discovery")


def select(config: Config, listed: Sequence[Mapping[str, object]]) -> list[OrgConfig]:
    """The orgs of `listed` (the API's items) that `[discovery]` takes, as org settings,
    sorted by id; orgs named in `[[orgs]]` are not among them (they keep their own)."""
    discovery = config.discovery
    assert discovery is not None
    configured = {org.id for org in config.orgs}
    found: dict[str, OrgConfig] = {}
    for item in listed:
        org_id, name = item.get("org_id"), item.get("name")
        if not isinstance(org_id, str) or org_id in configured:
            continue
        label = name if isinstance(name, str) else None
        keys = [org_id] + ([label] if label else [])
        if not any(fnmatch.fnmatchcase(k, g) for k in keys for g in discovery.include):
            continue
        if any(fnmatch.fnmatchcase(k, g) for k in keys for g in discovery.exclude):
            continue
        if not ORG_ID.match(org_id) or ".." in org_id:
            log.warning("discovery: skipping organization %r: not an id the collector can "
                        "use in a URL", org_id)
            continue
        found[org_id] = config.discovered_org(org_id, label)
    return [found[k] for k in sorted(found)]


def discover(config: Config, client: DevinClient) -> list[OrgConfig]:
    """The orgs discovery finds now. Raises the client's `ApiError` when the list cannot be
    read (the caller keeps the orgs it had)."""
    return select(config, client.organizations())
