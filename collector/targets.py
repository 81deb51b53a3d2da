"""What gets collected: one target per source, org and segment, with its schedule. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from collector.calendars import Calendar, windows
from collector.config import ALL_SEGMENT, Config, OrgConfig
from collector.sources import FAMILIES, SESSIONS, Source
from collector.windows import Window

HOURS = windows(3600)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a target's windows are fetched: every `interval` seconds while open, then at
    each of `repoll_ages` after they close; `per_call` windows (buckets) at most per
    request. The default is the sessions' default schedule."""

    calendar: Calendar = HOURS
    interval: int = 900
    repoll_ages: tuple[int, ...] = (3600, 6 * 3600, 86_400, 3 * 86_400, 7 * 86_400)
    per_call: int = 1


@dataclass(frozen=True, slots=True)
class Target:
    """One source of an org as a whole (`segment == "all"`), or of one named slice of it
    (segments apply to the sources that take user filters). A source with `definition`
    parameters (active users) has one target per definition: its segment names it, like
    ``min_sessions=1,min_searches=1``, so rows of two definitions never mix."""

    org_id: str
    segment: str = ALL_SEGMENT
    source: Source = SESSIONS
    user_ids: tuple[str, ...] = ()
    service_user_ids: tuple[str, ...] = ()
    playbook_id: str | None = None
    #: Values of the source's `definition` parameters, in its order.
    definition: tuple[int, ...] = ()
    timing: Timing = Timing()

    @property
    def calendar(self) -> Calendar:
        return self.timing.calendar

    def params(self) -> list[tuple[str, str]]:
        """The filter query parameters, arrays as repeated keys."""
        params = [("user_ids", u) for u in self.user_ids]
        params += [("service_user_ids", s) for s in self.service_user_ids]
        if self.playbook_id is not None:
            params.append(("playbook_id", self.playbook_id))
        params += [(k, str(v)) for k, v in zip(self.source.definition, self.definition,
                                                 strict=True)]
        return params

    def __str__(self) -> str:
        name = self.org_id if self.segment == ALL_SEGMENT else f"{self.org_id}/{self.segment}"
        return name if self.source is SESSIONS else f"{name} {self.source.name}"


def timing(config: Config, source: Source) -> Timing:
    """`source`'s schedule under `config`: `[sources.<name>]`, else `[schedule]`."""
    options = config.sources.options(source.config_name)
    schedule = config.schedule
    per_call = int(getattr(options, source.per_call)) if source.per_call else 1
    return Timing(
        calendar=source.calendar or windows(config.windows.size),
        interval=max(options.interval or schedule.interval, schedule.interval),
        repoll_ages=(options.repoll_ages if options.repoll_ages is not None
                     else schedule.repoll_ages),
        per_call=per_call,
    )


def _definition(config: Config, source: Source) -> tuple[int, ...]:
    options = config.sources.options(source.config_name)
    return tuple(int(getattr(options, name)) for name in source.definition)


def definition_label(source: Source, values: tuple[int, ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in zip(source.definition, values, strict=True))


def targets_for_org(
    config: Config,
    org: OrgConfig,
    *,
    segments: tuple[str, ...] = (),
    families: tuple[str, ...] = (),
) -> Iterator[Target]:
    """The targets of one org (configured or discovered), optionally narrowed."""
    for family in config.sources_for(org):
        if families and family not in families:
            continue
        for source in FAMILIES[family]:
            when = timing(config, source)
            if source.definition:
                values = _definition(config, source)
                if not segments or ALL_SEGMENT in segments:
                    yield Target(org.id, definition_label(source, values), source,
                                 definition=values, timing=when)
                continue
            if not segments or ALL_SEGMENT in segments:
                yield Target(org.id, source=source, timing=when)
            if not source.segmented:
                continue
            for seg in org.segments:
                if segments and seg.name not in segments:
                    continue
                yield Target(
                    org_id=org.id,
                    segment=seg.name,
                    source=source,
                    user_ids=tuple(seg.user_ids),
                    service_user_ids=tuple(seg.service_user_ids),
                    playbook_id=seg.playbook_id,
                    timing=when,
                )


def targets_from_config(
    config: Config,
    org_ids: tuple[str, ...] = (),
    segments: tuple[str, ...] = (),
    families: tuple[str, ...] = (),
    orgs: Sequence[OrgConfig] | None = None,
) -> list[Target]:
    """Every target the configuration defines (or of `orgs`, when given: configured and
    discovered ones), optionally narrowed to some orgs, segments or source families.
    `segments` may name ``"all"`` to include the whole-org targets. Sources take turns:
    every org's sessions first, then every org's PRs, and so on."""
    chosen = [o for o in (config.orgs if orgs is None else orgs)
              if not org_ids or o.id in org_ids]
    per_org = [list(targets_for_org(config, org, segments=segments, families=families))
               for org in chosen]
    order = {name: i for i, name in enumerate(FAMILIES)}
    flat = [t for targets in per_org for t in targets]
    return sorted(flat, key=lambda t: order[t.source.config_name])


def chunks(target: Target, windows_: Iterable[Window]) -> Iterator[tuple[Target, Window]]:
    """Work for `target`: each window alone, or for a source answering many buckets a call,
    runs of adjacent buckets merged into one window of at most `per_call` buckets."""
    per_call = target.timing.per_call
    if per_call <= 1 or not target.source.bucketed:
        for window in windows_:
            yield target, window
        return
    run: list[Window] = []
    for window in sorted(windows_):
        if run and (window.start != run[-1].end or len(run) >= per_call):
            yield target, Window(run[0].start, run[-1].end)
            run = []
        run.append(window)
    if run:
        yield target, Window(run[0].start, run[-1].end)
