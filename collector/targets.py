"""What gets collected: one target per source, org and segment. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from collector.config import ALL_SEGMENT, Config
from collector.sources import SESSIONS, Source


@dataclass(frozen=True, slots=True)
class Target:
    """One source of an org as a whole (`segment == "all"`), or of one named slice of it
    (segments apply to the sources that take user filters)."""

    org_id: str
    segment: str = ALL_SEGMENT
    source: Source = SESSIONS
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
        name = self.org_id if self.segment == ALL_SEGMENT else f"{self.org_id}/{self.segment}"
        return name if self.source is SESSIONS else f"{name} {self.source.name}"


def targets_from_config(
    config: Config,
    org_ids: tuple[str, ...] = (),
    segments: tuple[str, ...] = (),
    sources: tuple[Source, ...] = (SESSIONS,),
) -> list[Target]:
    """Every target the configuration defines, optionally narrowed to some orgs, segments
    or sources. `segments` may name ``"all"`` to include the whole-org targets."""
    targets: list[Target] = []
    for source in sources:
        for org in config.orgs:
            if org_ids and org.id not in org_ids:
                continue
            if not segments or ALL_SEGMENT in segments:
                targets.append(Target(org.id, source=source))
            if not source.segmented:
                continue
            for seg in org.segments:
                if segments and seg.name not in segments:
                    continue
                targets.append(
                    Target(
                        org_id=org.id,
                        segment=seg.name,
                        source=source,
                        user_ids=tuple(seg.user_ids),
                        service_user_ids=tuple(seg.service_user_ids),
                        playbook_id=seg.playbook_id,
                    )
                )
    return targets
