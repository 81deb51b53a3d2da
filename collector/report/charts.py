"""Charts as SVG, drawn in Python: pure functions from numbers to markup.

A chart is an ``<svg>`` with a ``viewBox`` (it scales to any width) holding one ``<g>`` per
series (``data-series``) and one element per point (``data-value``). Bars are vertical
strokes and active users or billing days are horizontal strokes over their bucket, so each
point is one short ``<path>``: ninety days of ten origins stay a few kilobytes. A series whose
points cover every slot in order (the usual case) lists its x labels once, on the ``<svg>``
(``data-x``); the points of a sparser series carry their own ``data-x``. The page's script
builds each chart's table and CSV from these attributes, so the table is the chart's data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import NamedTuple

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 6, 8, 20
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

#: Kinds of series: stacked bars, overlaid bars, horizontal steps over each point's span.
STACK, BAR, STEP = "stack", "bar", "step"


class Point(NamedTuple):
    x: str  #: the label of the point's row in the table (a date or a category)
    at: float  #: where it starts, in slots
    value: float
    span: float = 1.0  #: how many slots it covers (a week is 7 days)
    partial: bool = False  #: not final yet (an open bucket, an incomplete day)


@dataclass(frozen=True, slots=True)
class Series:
    key: str
    label: str
    color: str
    kind: str
    points: Sequence[Point]


@dataclass
class Chart:
    id: str
    title: str
    note: str
    #: The label of every slot, in order (days, or categories).
    slots: Sequence[str]
    series: list[Series] = field(default_factory=list)
    #: The table's first column, and whether its rows are dates (sorted as such).
    x_name: str = "day"
    #: Decimals the table shows (ACUs: 1).
    decimals: int = 0
    unit: str = ""

    @property
    def points(self) -> int:
        return sum(len(s.points) for s in self.series)


def num(value: float) -> str:
    """A coordinate or value, short: 12, 12.5, 0.25 (no trailing zeros, no -0)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def value_text(value: float) -> str:
    """A point's value as stored in ``data-value``: exact to the views' six decimals."""
    if value == int(value):
        return str(int(value))
    rounded = round(float(value), 6)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def nice_max(value: float) -> tuple[float, float]:
    """The top of the y axis and its tick step: 1, 2 or 5 times a power of ten, four ticks
    at most."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step - 1e-9), step


def short(value: float) -> str:
    """An axis label: 950, 1.2k, 3M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return num(round(value, 2))


def _dense(series: Series, slots: Sequence[str]) -> bool:
    return len(series.points) == len(slots) and all(
        p.x == slots[i] and p.at == i and p.span == 1 for i, p in enumerate(series.points))


def _top(chart: Chart) -> float:
    stacked: dict[float, float] = {}
    top = 0.0
    for s in chart.series:
        for p in s.points:
            if s.kind == STACK:
                stacked[p.at] = stacked.get(p.at, 0.0) + max(p.value, 0.0)
            else:
                top = max(top, p.value)
    return max([top, *stacked.values()])


def svg(chart: Chart, date_ticks: Sequence[tuple[int, str]] = ()) -> str:
    """The chart as an ``<svg>`` element. `date_ticks` label some slots on the x axis
    (slot index, text) of a chart by day, whose slots are consecutive ISO dates; without
    them every slot is labelled (categories).

    The points are drawn in a group scaled to one unit per slot across and one unit per
    pixel up from the axis, so a bar is ``M3 0V41``: short, and exact in x."""
    n = max(len(chart.slots), 1)
    slot = PLOT_W / n
    top, step = nice_max(_top(chart) * 1.04)  # a little room above the highest point
    base = TOP + PLOT_H

    scale = PLOT_H / top

    def h(value: float) -> str:
        return str(round(value * scale)) if value > 0 else "0"

    if date_ticks:
        xs = f' data-start="{chart.slots[0]}" data-n="{len(chart.slots)}"'
    else:
        xs = f' data-x="{escape(",".join(chart.slots))}"'
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart.title)}"'
        f' data-chart="{escape(chart.id)}" data-xname="{escape(chart.x_name)}"'
        f' data-decimals="{chart.decimals}"{xs}>',
        '<g class="axis">',
    ]
    tick = 0.0
    while tick <= top + 1e-9:
        ty = num(base - PLOT_H * tick / top)
        parts.append(f'<path d="M{LEFT} {ty}H{WIDTH - RIGHT}"/>'
                     f'<text x="{LEFT - 4}" y="{ty}" dy="4" text-anchor="end">{short(tick)}'
                     "</text>")
        tick += step
    labels = date_ticks or [(i, s) for i, s in enumerate(chart.slots)]
    for i, label in labels:
        tx = LEFT + slot * (i + 0.5)
        anchor = "middle"
        if date_ticks and tx > WIDTH - RIGHT - 24:  # a date by the right edge: end there
            tx, anchor = WIDTH - RIGHT, "end"
        parts.append(f'<text x="{tx:.1f}" y="{HEIGHT - 5}" text-anchor="{anchor}">'
                     f"{escape(label)}</text>")
    # x: slot i's middle is at i (the group starts half a slot in); y: pixels up
    parts.append(f'</g><g transform="translate({num(LEFT + slot / 2)} {base})'
                 f' scale({num(slot)} -1)">')
    width = num(min(0.78, 28 / slot))
    stacked: dict[float, float] = {}
    for s in chart.series:
        dense = _dense(s, chart.slots)
        stroke = width if s.kind != STEP else "2.5"
        parts.append(f'<g data-series="{escape(s.key)}" data-label="{escape(s.label)}"'
                     f' class="{s.kind}" stroke="{s.color}" stroke-width="{stroke}">')
        stack = s.kind == STACK
        for x, at, value, span, partial in s.points:
            extra = "" if dense else f' data-x="{escape(x)}"'
            if partial:
                extra += ' class="p"'
            if s.kind == STEP:
                x0, x1 = max(at, 0) - 0.5, min(at + span, n) - 0.5
                d = f"M{num(x0)} {h(value)}H{num(x1)}"
            else:
                low = stacked.get(at, 0.0) if stack else 0.0
                high = low + value if value > 0 else low
                if stack:
                    stacked[at] = high
                d = f"M{int(at) if at == int(at) else num(at)} {h(low)}V{h(high)}"
            parts.append(f'<path d="{d}" data-value="{value_text(value)}"{extra}/>')
        parts.append("</g>")
    parts.append("</g></svg>")
    return "".join(parts)


def legend(chart: Chart) -> str:
    items = "".join(
        f'<li><i class="{s.kind}" style="--c:{s.color}"></i>{escape(s.label)}</li>'
        for s in chart.series)
    return f'<ul class="legend">{items}</ul>'
