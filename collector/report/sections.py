"""The report's sections: one per scope (all orgs together, each org, each segment), each a
list of charts built from the views' rows. Pure: `Data` in, `Chart`s out."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from collector.report.charts import BAR, STACK, STEP, Chart, Point, Series
from collector.report.queries import ALL, Bucket, Daily, Data

ORIGIN_COLORS = {
    "webapp": "#4e79a7", "slack": "#f28e2b", "api": "#59a14f", "automation": "#e15759",
    "desktop": "#76b7b2", "jira": "#edc948", "linear": "#b07aa1", "teams": "#ff9da7",
    "code_scan": "#9c755f",
}
EXTRA_COLORS = ("#8cd17d", "#b6992d", "#499894", "#d37295", "#a0cbe8", "#f1ce63")
OTHER = "other"
OTHER_COLOR = "#bab0ac"
SIZES = ("xs", "s", "m", "l", "xl")
PERIODS = (("day", "daily", "#4e79a7"), ("week", "weekly", "#f28e2b"),
           ("month", "monthly", "#59a14f"))


@dataclass(frozen=True)
class Scope:
    key: str
    title: str
    orgs: tuple[str, ...]
    segment: str = ALL

    @property
    def whole(self) -> bool:
        return self.segment == ALL


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def scopes(data: Data, segments: tuple[str, ...]) -> list[Scope]:
    """All orgs together (when more than one), each org, each segment; `segments` narrows
    (``all`` names the whole orgs)."""
    wanted = set(segments)
    whole = not segments or ALL in wanted
    found: list[Scope] = []
    orgs = tuple(data.orgs)
    if whole and len(orgs) > 1:
        found.append(Scope("all", "All organizations", orgs))
    by_org = {org: [s for o, s in data.segments() if o == org] for org in orgs}
    for org in orgs:
        name = data.orgs[org]
        label = f"{name} ({org})" if name else org
        if whole:
            found.append(Scope(slug(org), label, (org,)))
        for seg in by_org[org]:
            if not segments or seg in wanted:
                found.append(Scope(f"{slug(org)}--{slug(seg)}", f"{label}: segment {seg}",
                                   (org,), seg))
    return found


def days(data: Data) -> list[date]:
    count = (data.last_day - data.first_day).days + 1
    return [data.first_day + timedelta(days=i) for i in range(count)]


def date_ticks(slots: list[date]) -> list[tuple[int, str]]:
    """At most six labels on the x axis, evenly spaced."""
    step = max(1, -(-len(slots) // 6))
    return [(i, f"{d:%b} {d.day}") for i, d in enumerate(slots) if i % step == 0]


def _summed(rows: dict[tuple[str, str, date], Daily], scope: Scope,
            slots: list[date]) -> list[tuple[int, date, dict[str, float], bool]]:
    """Per day with any row: the sums over the scope's orgs, and whether all were complete."""
    out = []
    for i, day in enumerate(slots):
        found = [rows[k] for k in ((o, scope.segment, day) for o in scope.orgs) if k in rows]
        if not found:
            continue
        sums: dict[str, float] = {}
        for row in found:
            for name, value in row.values.items():
                sums[name] = sums.get(name, 0) + value
        out.append((i, day, sums, all(r.complete for r in found)))
    return out


def charts(data: Data, scope: Scope) -> list[Chart]:
    slots = days(data)
    labels = [d.isoformat() for d in slots]
    found = [_sessions(data, scope, slots, labels), _acus(data, scope, slots, labels),
             _prs(data, scope, slots, labels), _sizes(data, scope)]
    if scope.whole:
        found += [_active_users(data, scope, slots, labels),
                  _searches(data, scope, slots, labels)]
    return found


def _sessions(data: Data, scope: Scope, slots: list[date], labels: list[str]) -> Chart:
    rows = _summed(data.sessions, scope, slots)
    per_day: list[dict[str, int]] = []
    for _, day, sums, _ in rows:
        origins: dict[str, int] = {}
        for org in scope.orgs:
            for origin, n in data.origins.get((org, scope.segment, day), {}).items():
                origins[origin] = origins.get(origin, 0) + n
        origins[OTHER] = max(0, int(sums["sessions"]) - sum(origins.values()))
        per_day.append(origins)
    totals: dict[str, int] = {}
    for origins in per_day:
        for origin, n in origins.items():
            totals[origin] = totals.get(origin, 0) + n
    order = sorted((o for o in totals if totals[o] > 0 and o != OTHER),
                   key=lambda o: (-totals[o], o))
    if totals.get(OTHER):
        order.append(OTHER)
    extra = iter(EXTRA_COLORS * 4)
    chart = Chart(f"{scope.key}-sessions", "Sessions per day, by origin",
                  "Sessions created each UTC day, stacked by origin. \u201cother\u201d: "
                  "sessions of origins the API does not report by origin. Faded bars: "
                  "days not complete yet.", labels)
    for origin in order:
        color = OTHER_COLOR if origin == OTHER else ORIGIN_COLORS.get(origin) or next(extra)
        label = "other (not reported by origin)" if origin == OTHER else origin
        points = [Point(day.isoformat(), i, origins.get(origin, 0), partial=not complete)
                  for (i, day, _, complete), origins in zip(rows, per_day, strict=True)]
        chart.series.append(Series(origin, label, color, STACK, points))
    return chart


def _acus(data: Data, scope: Scope, slots: list[date], labels: list[str]) -> Chart:
    rows = _summed(data.sessions, scope, slots)
    chart = Chart(f"{scope.key}-acus", "ACUs per day", "", labels, decimals=1, unit="ACUs")
    chart.series.append(Series(
        "sessions", "ACUs of the sessions created (UTC day)", "#4e79a7", BAR,
        [Point(d.isoformat(), i, round(s["acus"], 6), partial=not c) for i, d, s, c in rows]))
    billed = _buckets(data.billed.get(o, []) for o in scope.orgs) if scope.whole else []
    if billed:
        chart.series.append(Series(
            "billed", "ACUs billed (billing day, 08:00 to 08:00 UTC)", "#e15759", STEP,
            [Point(b.start.isoformat(), (b.start - data.first_day).days + 1 / 3,
                   round(b.value, 6), partial=not b.final) for b in billed]))
    chart.note = (
        "Bars: ACUs of the sessions created each UTC day (session_metrics_daily). "
        + ("Lines: ACUs billed per billing day (acu_consumption_daily); a billing day runs "
           "from 08:00 UTC to 08:00 UTC the next day, so its line is drawn 8 hours later."
           if billed else "Billed ACUs (consumption) were not collected for this range."
           if scope.whole else "Billed ACUs are counted per organization only."))
    return chart


def _buckets(groups: Iterable[list[Bucket]]) -> list[Bucket]:
    """Buckets of several orgs summed by start; final when every org's is."""
    merged: dict[date, Bucket] = {}
    for group in groups:
        for b in group:
            old = merged.get(b.start)
            merged[b.start] = b if old is None else Bucket(
                b.start, b.end, old.value + b.value, old.final and b.final)
    return [merged[k] for k in sorted(merged)]


def _prs(data: Data, scope: Scope, slots: list[date], labels: list[str]) -> Chart:
    rows = _summed(data.prs, scope, slots)
    chart = Chart(f"{scope.key}-prs", "PRs created and merged per day",
                  "PRs Devin created each UTC day, and how many of those had merged when "
                  "fetched (merges keep arriving for days after).", labels)
    for key, label, color in (("created", "created", "#a0cbe8"),
                              ("merged", "merged", "#4e79a7")):
        chart.series.append(Series(key, label, color, BAR, [
            Point(d.isoformat(), i, s[key], partial=not c) for i, d, s, c in rows]))
    return chart


def _sizes(data: Data, scope: Scope) -> Chart:
    totals: dict[str, tuple[int, int]] = {}
    for org in scope.orgs:
        for size, (n, merged) in data.sizes.get((org, scope.segment), {}).items():
            old = totals.get(size, (0, 0))
            totals[size] = (old[0] + n, old[1] + merged)
    order = [s for s in SIZES if s in totals] + sorted(set(totals) - set(SIZES))
    chart = Chart(f"{scope.key}-sizes", "Merged-PR share by session size",
                  "Of the sessions created in the range, the share (%) whose PR had merged "
                  "when fetched, by size.", order, x_name="size", decimals=1, unit="%")
    points = [Point(size, i, round(100 * totals[size][1] / totals[size][0], 2))
              for i, size in enumerate(order) if totals[size][0]]
    chart.series.append(Series("merged_share", "sessions with a merged PR (%)", "#59a14f",
                               BAR, points))
    return chart


def _active_users(data: Data, scope: Scope, slots: list[date], labels: list[str]) -> Chart:
    definition = data.definition
    what = ("" if definition is None else
            f" Definition: at least {definition[0]} session(s) and {definition[1]} "
            "search(es) in the period.")
    summed = (" Summed over organizations: a person active in two counts twice."
              if len(scope.orgs) > 1 else "")
    chart = Chart(f"{scope.key}-active", "Daily, weekly and monthly active users",
                  "Distinct users active each UTC day, Monday-based week and calendar month, "
                  "each line spanning its period; faded: not final yet." + what + summed,
                  labels)
    for period, label, color in PERIODS:
        buckets = [b for b in _buckets(data.active.get((o, period), []) for o in scope.orgs)
                   if b.end > data.first_day]
        if not buckets:
            continue
        points = [Point(b.start.isoformat(), (b.start - data.first_day).days, b.value,
                        span=(b.end - b.start).days, partial=not b.final) for b in buckets]
        chart.series.append(Series(period, label, color, STEP, points))
    return chart


def _searches(data: Data, scope: Scope, slots: list[date], labels: list[str]) -> Chart:
    rows = _summed({(o, ALL, d): r for (o, d), r in data.searches.items()}, scope, slots)
    chart = Chart(f"{scope.key}-searches", "Searches per day",
                  "Searches created each UTC day.", labels)
    chart.series.append(Series("searches", "searches", "#b07aa1", BAR, [
        Point(d.isoformat(), i, s["searches"], partial=not c) for i, d, s, c in rows]))
    return chart
