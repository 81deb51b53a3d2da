"""What gets collected: one target per org and segment. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from collector.config import ALL_SEGMENT, Config


@dataclass(frozen=True, slots=True)
class Target:
    """An org as a whole (`segment == "all"`) or one named slice of it."""

    org_id: str
    segment: str = ALL_SEGMENT
    user_ids: tuple[str, ...] = ()
    service_user_ids: tuple[str, ...] = ()
    playbook_id: str | None = None

    def params(self) -> list[tuple[str, str]]:
        """The filter query parameters, arrays as repeated keys."""
        params = [("user_ids", u) for u in self.user_ids]
        params += [("service_user_ids", s) for s in self.service_user_ids]
        if self.playbook_id is not None:
            params.append(("playbook_id", self.playbook_id))
        return params

    def __str__(self) -> str:
        return self.org_id if self.segment == ALL_SEGMENT else f"{self.org_id}/{self.segment}"


def targets_from_config(
    config: Config, org_ids: tuple[str, ...] = (), segments: tuple[str, ...] = ()
) -> list[Target]:
    """Every target the configuration defines, optionally narrowed to some orgs or segments.

    `segments` may name ``"all"`` to include the whole-org targets.
    """
    targets: list[Target] = []
    for org in config.orgs:
        if org_ids and org.id not in org_ids:
            continue
        if not segments or ALL_SEGMENT in segments:
            targets.append(Target(org.id))
        for seg in org.segments:
            if segments and seg.name not in segments:
                continue
            targets.append(
                Target(
                    org_id=org.id,
                    segment=seg.name,
                    user_ids=tuple(seg.user_ids),
                    service_user_ids=tuple(seg.service_user_ids),
                    playbook_id=seg.playbook_id,
                )
            )
    return targets
