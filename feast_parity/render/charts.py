"""Geometry of the HTML report's inline SVG charts, as plain data the templates draw.

Nothing here writes markup: a chart is coordinates, colours and label strings, and
``templates/_charts.html.j2`` turns it into SVG (escaping every label on the way).

>>> chart = trend_chart([("a", 0.0), ("b", 0.2)], lambda v: f"{v:.2f}", rules=[(0.1, "warn")])
>>> [(rule.label, rule.title) for rule in chart.rules], chart.last
([('warn', 'warn 0.10')], '0.20')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from feast_parity.render.text import number

SERIES_COLORS = {
    "online": "rgba(21,101,192,0.55)",
    "offline": "rgba(239,108,0,0.55)",
    "served lag": "rgba(21,101,192,0.7)",
}
DEFAULT_COLOR = "#888"
TICK_ROOM = 44  # pixels an 8-point axis label of up to 10 characters needs


def _c(value: float) -> float:
    """An SVG coordinate: one decimal, never ``-0.0``."""
    return round(value, 1) + 0.0


def axis_label(label: str) -> str:
    """A bin label short enough for an axis: ``[0.0009929, 0.004279)`` -> ``≥0.00099``.

    >>> axis_label("[0.0009929, 0.004279)"), axis_label("< 0.0009929"), axis_label("US")
    ('≥0.00099', '<0.00099', 'US')
    """
    match = re.match(r"^(\[|< |>= )(-?[0-9.eE+-]+)", label)
    if not match:
        return label
    sign = {"[": "≥", "< ": "<", ">= ": "≥"}[match.group(1)]
    try:
        value = float(match.group(2))
    except ValueError:
        return label
    return f"{sign}{value:.3g}" if 1 <= abs(value) < 1e4 else f"{sign}{value:.2g}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    box_x: float
    box_y: float
    text_x: float
    text_y: float
    fill: str
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    legend: list[LegendEntry]


def bar_chart(
    labels: Sequence[object],
    series: Mapping[str, Sequence[object]],
    *,
    width: int = 460,
    height: int = 150,
) -> BarChart:
    """Overlaid bars of each series' proportion per bin (a missing or non-finite count is 0).

    >>> chart = bar_chart(["a", "b"], {"online": [1, 3], "offline": [2, 2]})
    >>> [(b.title, b.height) for b in chart.bars]  # doctest: +NORMALIZE_WHITESPACE
    [('online a: 25.0%', 46.7), ('online b: 75.0%', 140.0),
     ('offline a: 50.0%', 93.3), ('offline b: 50.0%', 93.3)]
    """
    n = max(len(labels), *(len(c) for c in series.values()), 1)
    names = [str(label) for label in labels] + [""] * (n - len(labels))
    props: dict[str, list[float]] = {}
    for name, counts in series.items():
        values = [max(number(c) or 0.0, 0.0) for c in counts]
        total = sum(values) or 1.0
        props[name] = [v / total for v in values]
    top = max((max(p) for p in props.values() if p), default=1.0) or 1.0
    bar_w = (width - 40) / n
    bars = []
    for name, proportions in props.items():
        fill = SERIES_COLORS.get(name, DEFAULT_COLOR)
        for i, value in enumerate(proportions):
            h = (height - 10) * value / top
            bars.append(
                Bar(
                    x=_c(30 + i * bar_w),
                    y=_c(height - h),
                    width=_c(max(bar_w - 2, 1)),
                    height=_c(h),
                    fill=fill,
                    title=f"{name} {names[i]}: {value:.1%}",
                )
            )
    tick_step = max(1, math.ceil(n * TICK_ROOM / (width - 40)))  # labels never overlap
    ticks = [
        Tick(x=_c(30 + (i + 0.5) * bar_w), y=height + 14, text=axis_label(label)[:10])
        for i, label in enumerate(names)
        if i % tick_step == 0
    ]
    legend = [
        LegendEntry(
            box_x=30 + j * 90,
            box_y=height + 24,
            text_x=44 + j * 90,
            text_y=height + 33,
            fill=SERIES_COLORS.get(name, DEFAULT_COLOR),
            text=name,
        )
        for j, name in enumerate(props)
    ]
    return BarChart(width=width, height=height + 40, bars=bars, ticks=ticks, legend=legend)


@dataclass(frozen=True)
class PairedRow:
    label: str  # the bin's full label: a range or a category
    y: float
    online_width: float
    offline_width: float
    online_text: str
    offline_text: str


@dataclass(frozen=True)
class PairedBars:
    width: int
    height: int
    label_width: int
    bar_left: float
    bar_height: float
    rows: list[PairedRow]


def paired_bars(
    labels: Sequence[object],
    online: Sequence[object],
    offline: Sequence[object],
    *,
    categorical: bool = False,
    width: int = 440,
    row_height: int = 22,
    label_width: int = 150,
) -> PairedBars:
    """Served and offline share per bin as two bars side by side, one bin per row, so nothing
    is blended and every bin keeps its full label. Categorical bins are sorted by their larger
    share, with ``other`` last; numeric bins keep their order.

    >>> chart = paired_bars(["b", "other", "a"], [1, 1, 2], [2, 0, 2], categorical=True)
    >>> [(r.label, r.online_text, r.offline_text) for r in chart.rows]
    [('a', '50.0%', '50.0%'), ('b', '25.0%', '50.0%'), ('other', '25.0%', '0.0%')]
    """
    n = max(len(labels), len(online), len(offline))
    names = [str(label) for label in labels] + [""] * (n - len(labels))

    def shares(counts: Sequence[object]) -> list[float]:
        values = [max(number(c) or 0.0, 0.0) for c in counts] + [0.0] * (n - len(counts))
        total = sum(values) or 1.0
        return [v / total for v in values]

    served, stored = shares(online), shares(offline)
    order = list(range(n))
    if categorical:
        order.sort(key=lambda i: (names[i] == "other", -max(served[i], stored[i]), names[i]))
    top = max([*served, *stored, 0.0]) or 1.0
    bar_left = label_width + 6
    room = width - bar_left - 84  # room for the '11.7% / 10.1%' after the longer bar
    bar_height = (row_height - 4) / 2
    rows = [
        PairedRow(
            label=names[i],
            y=_c(j * row_height),
            online_width=_c(room * served[i] / top),
            offline_width=_c(room * stored[i] / top),
            online_text=f"{served[i]:.1%}",
            offline_text=f"{stored[i]:.1%}",
        )
        for j, i in enumerate(order)
    ]
    return PairedBars(
        width=width,
        height=n * row_height + 4,
        label_width=label_width,
        bar_left=bar_left,
        bar_height=_c(bar_height),
        rows=rows,
    )


@dataclass(frozen=True)
class Rule:
    """A dashed horizontal line at a reference value (a PSI threshold, an SLO)."""

    y: float
    label: str
    title: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str
    fill: str = ""  # "" draws the line's colour; a severity colour marks a run over a rule


@dataclass(frozen=True)
class TrendChart:
    width: int
    height: int
    left: float
    right: float
    label_x: float
    baseline_y: float
    color: str
    rules: list[Rule]
    lines: list[str]  # SVG polyline ``points``, one per run of consecutive known values
    dots: list[Dot]
    last: str | None  # the latest value, formatted


def trend_chart(
    points: Sequence[tuple[str, float | None]],
    fmt: Callable[[float], str],
    *,
    rules: Sequence[tuple[float, str]] = (),
    color: str = "#1565c0",
    width: int = 300,
    height: int = 90,
) -> TrendChart:
    """One metric over runs: ``points`` are (run label, value or None for a gap), oldest first;
    ``rules`` are (value, label) reference lines, titled with their formatted value. A point
    at or above a ``warn`` or ``fail`` rule is drawn in that severity's colour."""
    values = [v for _, v in points if v is not None]
    top = max([*values, *(v for v, _ in rules), 0.0]) * 1.1 or 1.0
    n = len(points)
    left, right, pad = 4, width - 56, 6

    def x(i: int) -> float:
        return _c(left + (right - left) * (i / (n - 1) if n > 1 else 0.5))

    def y(v: float) -> float:
        return _c(pad + (height - 2 * pad) * (1 - v / top))

    segments: list[list[str]] = [[]]
    for i, (_, v) in enumerate(points):
        if v is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(i)},{y(v)}")
    last = next((v for _, v in reversed(points) if v is not None), None)
    return TrendChart(
        width=width,
        height=height,
        left=left,
        right=right,
        label_x=right + 3,
        baseline_y=y(0.0),
        color=color,
        rules=[
            Rule(y=y(value), label=label, title=f"{label} {fmt(value)}") for value, label in rules
        ],
        lines=[" ".join(segment) for segment in segments if len(segment) > 1],
        dots=[
            Dot(x=x(i), y=y(v), title=f"{when}: {fmt(v)}", fill=_over(v, rules))
            for i, (when, v) in enumerate(points)
            if v is not None
        ],
        last=None if last is None else fmt(last),
    )


SEVERITY_COLORS = {"fail": "#c62828", "warn": "#ef6c00"}


def _over(value: float, rules: Sequence[tuple[float, str]]) -> str:
    """The colour of the worst ``warn``/``fail`` rule that ``value`` reaches, else ''."""
    reached = [label for limit, label in rules if label in SEVERITY_COLORS and value >= limit]
    if "fail" in reached:
        return SEVERITY_COLORS["fail"]
    return SEVERITY_COLORS["warn"] if reached else ""
