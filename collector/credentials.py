"""Which token each org is fetched with: tokens by org id, numbered and labelled for
output, never shown. Tokens come from the environment (see `collector.assembly`) and live
only here; every message that may quote an API answer is scrubbed of them."""

from __future__ import annotations

from collections.abc import Mapping

from collector.errors import CollectorError

#: Keys of `Credentials` beside org ids: the token of any org not named (discovered ones),
#: and the token that lists the enterprise's organizations.
ANY_ORG, ENTERPRISE = "*", "@enterprise"


class Credentials:
    """Tokens by org id (and `ANY_ORG`, `ENTERPRISE`). Its repr and str name how many,
    never which."""

    __slots__ = ("_by_org", "_ids", "_labels")

    def __init__(
        self, by_org: Mapping[str, str], labels: Mapping[str, str] | None = None
    ) -> None:
        """`by_org` maps org ids to tokens; `labels`, org ids to what to call their token
        in output (the name of its environment variable), never the token itself."""
        self._by_org = dict(by_org)
        numbers: dict[str, int] = {}
        self._ids = {org: numbers.setdefault(t, len(numbers)) for org, t in self._by_org.items()}
        self._labels: dict[int, str] = {}
        for org, token_id in self._ids.items():
            self._labels.setdefault(token_id, (labels or {}).get(org, f"token {token_id + 1}"))

    def __repr__(self) -> str:
        return f"Credentials(<{len(set(self._ids.values()))} token(s) hidden>)"

    __str__ = __repr__

    def _key(self, org_id: str) -> str:
        if org_id in self._by_org:
            return org_id
        if ANY_ORG in self._by_org and org_id != ENTERPRISE:
            return ANY_ORG
        raise CollectorError(f"no token was loaded for org {org_id!r}")

    def token(self, org_id: str) -> str:
        return self._by_org[self._key(org_id)]

    def token_id(self, org_id: str) -> int:
        """A number standing for the org's token: orgs sharing a token share its number."""
        return self._ids[self._key(org_id)]

    def token_ids(self) -> set[int]:
        return set(self._ids.values())

    def label(self, token_id: int) -> str:
        return self._labels[token_id]

    def scrub(self, text: str) -> str:
        for token in self._by_org.values():
            if token:
                text = text.replace(token, "***")
        return text
