"""One chart as inline SVG; pure, no script, nothing fetched.

Every chart of a report has the same size and the same x axis (seconds from the run's
start, 0 to the experiment's end), so charts stacked in a grid read as small multiples.
Fault windows are shaded bands numbered as in the activities table. Step lines are drawn
with crisp edges, so a series' colour is exact on screen (the browser test counts it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaos_dynamo.report.charts import Chart, Series
from chaos_dynamo.report.markup import escape
from chaos_dynamo.report.model import Window

__all__ = ["WIDTH", "HEIGHT", "PLOT", "Palette", "Scale", "legend_items", "nice_ticks", "render_chart", "step_path"]

WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 54, 16, 24, 40
INSET = 5
HELD = ("step", "stack")
CHAR_WIDTH = 6.0  # an estimate of one character at font-size 10, for label layout
PLOT = (LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
"""The plot area inside a chart: x, y, width, height (SVG units = CSS pixels at full size)."""

SERIES_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#393b79", "#637939",
                 "#7f7f7f", "#a55194", "#8ca252", "#5254a3", "#6b6ecf", "#ff7f0e")
"""Distinct from each other, from the fault band and from the red of bad events (orange, the
closest to the fault band, comes last)."""
BAD = "#d62728"
FAULT = "#fde4c8"
FAULT_EDGE = "#f0b878"
FAULT_TEXT = "#9a4a00"
GRID = "#e6e8eb"
AXIS = "#9aa1a9"
TEXT = "#3b4148"


class Palette:
    """The same key gets the same colour on every chart it is given to (an experiment's
    section), in order of first use."""

    def __init__(self, colors: Sequence[str] = SERIES_COLORS) -> None:
        self._colors = tuple(colors)
        self._given: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        if key not in self._given:
            self._given[key] = self._colors[len(self._given) % len(self._colors)]
        return self._given[key]


@dataclass(frozen=True)
class Scale:
    """Maps [d0, d1] onto [r0, r1] linearly (a flat domain maps to r0)."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, value: float) -> float:
        if self.d1 == self.d0:
            return self.r0
        return self.r0 + (value - self.d0) * (self.r1 - self.r0) / (self.d1 - self.d0)


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def y_top(chart: Chart) -> float:
    """The top of the y axis: the chart's own, else a round number above the data."""
    if chart.y_max is not None:
        return chart.y_max
    stacks: dict[float, float] = {}
    for s in chart.series:
        if s.style == "stack":
            for x, y in s.points:
                stacks[x] = stacks.get(x, 0.0) + y
    values = [y for s in chart.series if s.style != "stack" for _, y in s.points]
    values += [*stacks.values(), *(t for t, _ in chart.thresholds)]
    peak = max(values, default=0.0)
    if peak <= 0:
        return 1.0
    ticks = nice_ticks(0.0, peak * 1.08, 4, chart.integer)
    top = ticks[-1]
    return top if top >= peak else top + (ticks[1] - ticks[0] if len(ticks) > 1 else peak)


def _fmt(value: float) -> str:
    """A tick value: whole numbers without decimals, others with at most two."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _num(value: float) -> str:
    """A coordinate, to a tenth of a pixel."""
    return f"{value:.1f}"


def render_chart(chart: Chart, windows: Sequence[Window], x_max: float, palette: Palette, uid: str) -> str:
    """The chart as an ``<svg>`` element: plot area, fault windows, grid, axes, series."""
    x0, y0, width, height = PLOT
    xs = Scale(0.0, max(x_max, 1e-9), x0, x0 + width)
    # Inset so that a series at 0 or at the top is not hidden under the frame.
    ys = Scale(0.0, y_top(chart), y0 + height - INSET, y0 + INSET)
    clip = f"clip-{uid}"
    bands = stacked(chart.series, x_max)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" data-chart="{escape(chart.key)}" data-x-max="{x_max:.3f}">',
        f"<title>{escape(chart.title)}</title>",
        f'<defs><clipPath id="{clip}"><rect x="{x0}" y="{y0}" width="{width}" height="{height}"/></clipPath></defs>',
        f'<rect class="plot" x="{x0}" y="{y0}" width="{width}" height="{height}" fill="#ffffff"/>',
        *_windows(windows, xs, y0, height),
        *_grid(chart, xs, ys, x_max),
        *_thresholds(chart, ys),
        f'<g clip-path="url(#{clip})">',
        *(_stack_area(s, steps, palette(s.key), xs, ys) for s, steps in bands),
        # Lower edges last: where a band above is empty, its edge would hide the one below.
        *(_stack_edge(s, steps, palette(s.key), xs, ys) for s, steps in reversed(bands)),
        *(_series(s, palette(s.key), xs, ys, x_max) for s in chart.series if s.style != "stack"),
        *_markers(chart, xs, y0, height),
        "</g>",
        f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="none" stroke="{AXIS}" '
        'shape-rendering="crispEdges"/>',
        *_axis_labels(chart, x0, y0, width, height),
        "</svg>",
    ]
    return "".join(parts)


def _windows(windows: Iterable[Window], xs: Scale, y0: float, height: float) -> list[str]:
    """Shaded bands (at least 2 px wide), labelled above the plot; a label that would run
    into the previous one moves right."""
    out = []
    free_from = 0.0
    for w in windows:
        left, right = xs(w.start), xs(w.end)
        band = max(right - left, 2.0)
        text = f"{w.index} {w.name}" if band > CHAR_WIDTH * (len(w.name) + 3) else str(w.index)
        label_x = max(left + 2, free_from)
        free_from = label_x + CHAR_WIDTH * len(text) + 4
        title = f"fault {w.index}: {w.name}, +{w.start:.2f} s to +{w.end:.2f} s ({w.status})"
        out.append(f'<g class="fault" data-index="{w.index}"><title>{escape(title)}</title>'
                   f'<rect x="{_num(left)}" y="{y0}" width="{_num(band)}" height="{height}" fill="{FAULT}" '
                   f'stroke="{FAULT_EDGE}" stroke-width="1" data-start="{w.start:.3f}" data-end="{w.end:.3f}"/>'
                   f'<text x="{_num(label_x)}" y="{y0 - 5}" font-size="10" fill="{FAULT_TEXT}">'
                   f"{escape(text)}</text></g>")
    return out


def _grid(chart: Chart, xs: Scale, ys: Scale, x_max: float) -> list[str]:
    """Horizontal grid lines at the y ticks, with their values; x ticks under the plot."""
    x0, y0, width, height = PLOT
    out = []
    for tick in nice_ticks(0.0, ys.d1, 4, chart.integer):
        y = round(ys(tick)) + 0.5
        out.append(f'<line x1="{x0}" x2="{x0 + width}" y1="{y}" y2="{y}" stroke="{GRID}" '
                   'shape-rendering="crispEdges"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 3.5}" font-size="10" text-anchor="end" fill="{TEXT}">'
                   f"{_fmt(tick)}</text>")
    for tick in nice_ticks(0.0, x_max, 6):
        x = round(xs(tick)) + 0.5
        out.append(f'<line x1="{x}" x2="{x}" y1="{y0 + height}" y2="{y0 + height + 4}" stroke="{AXIS}" '
                   'shape-rendering="crispEdges"/>')
        out.append(f'<text x="{x}" y="{y0 + height + 15}" font-size="10" text-anchor="middle" fill="{TEXT}">'
                   f"{_fmt(tick)}</text>")
    return out


def _thresholds(chart: Chart, ys: Scale) -> list[str]:
    """A dashed line across the plot for each threshold (a target), labelled at the right."""
    x0, _, width, _ = PLOT
    out = []
    for value, label in chart.thresholds:
        y = _num(ys(value))
        out.append(f'<g class="threshold"><title>{escape(label)}</title><line x1="{x0}" x2="{x0 + width}" '
                   f'y1="{y}" y2="{y}" stroke="#555b62" stroke-dasharray="5 4"/>'
                   f'<text x="{x0 + width - 4}" y="{float(y) - 4:.1f}" font-size="10" text-anchor="end" '
                   f'fill="{TEXT}">{escape(label)}</text></g>')
    return out


def visible(points: Sequence[tuple[float, float]], style: str, x_max: float) -> tuple[tuple[float, float], ...]:
    """The part of a series inside [0, x_max]. A held state (step, stack) starts at 0 with
    the value in effect then, and ends at its last point or, past the axis, at ``x_max``."""
    if style not in HELD:
        return tuple(p for p in points if 0 <= p[0] <= x_max)
    before = [p for p in points if p[0] <= 0]
    out = [(0.0, before[-1][1])] if before else []
    out += [p for p in points if 0 < p[0] <= x_max]
    if out and points[-1][0] > x_max and out[-1][0] < x_max:
        out.append((x_max, out[-1][1]))
    return tuple(out)


def stacked(series: Sequence[Series], x_max: float) -> list[tuple[Series, list[tuple[float, float, float]]]]:
    """Each ``stack`` series as (x, bottom, top) steps on top of the ones before it (they
    share their x values: the same buckets)."""
    out = []
    base: dict[float, float] = {}
    for s in series:
        if s.style != "stack":
            continue
        steps = [(x, base.get(x, 0.0), base.get(x, 0.0) + y) for x, y in visible(s.points, "stack", x_max)]
        base.update({x: top for x, _, top in steps})
        out.append((s, steps))
    return out


def _series(series: Series, color: str, xs: Scale, ys: Scale, x_max: float) -> str:
    name = escape(series.name)
    points = visible(series.points, series.style, x_max)
    if series.style == "dots":
        dots = []
        for (x, y), note in zip(points, _notes(series, x_max), strict=True):
            dots.append(f'<circle cx="{_num(xs(x))}" cy="{_num(ys(y))}" r="3.5" fill="{color}" '
                        f'stroke="#ffffff" stroke-width="1">' + (f"<title>{escape(note)}</title>" if note else "")
                        + "</circle>")
        return f'<g class="series" data-series="{name}" data-style="dots">{"".join(dots)}</g>'
    if not points:
        return ""
    if series.style == "line":
        coords = " ".join(f"{_num(xs(x))},{_num(ys(y))}" for x, y in points)
        return (f'<polyline class="series" data-series="{name}" data-style="line" points="{coords}" '
                f'fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>')
    return (f'<path class="series" data-series="{name}" data-style="{escape(series.style)}" '
            f'd="{step_path(points, xs, ys)}" fill="none" stroke="{color}" stroke-width="2" '
            'shape-rendering="crispEdges"/>')


def _notes(series: Series, x_max: float) -> list[str]:
    """The tooltip of each visible point of a dot series."""
    notes = list(series.notes) + [""] * (len(series.points) - len(series.notes))
    return [n for (x, _), n in zip(series.points, notes, strict=True) if 0 <= x <= x_max]


def _stack_area(series: Series, steps: list[tuple[float, float, float]], color: str, xs: Scale, ys: Scale) -> str:
    """One band of a stacked chart: a light step area between its bottom and its top (the
    fault bands show through it)."""
    if not steps or not any(t > b for _, b, t in steps):
        return ""
    back = [f"V{round(ys(steps[-1][1]))}"]
    for (x, bottom, _), (_, after, _) in zip(reversed(steps[:-1]), reversed(steps[1:]), strict=True):
        if bottom != after:
            back.append(f"V{round(ys(bottom))}")
        back.append(f"H{round(xs(x))}")
    top = step_path([(x, t) for x, _, t in steps], xs, ys)
    return (f'<path class="area" d="{top} {" ".join(back)} Z" fill="{color}" fill-opacity="0.28" '
            f'shape-rendering="crispEdges"><title>{escape(series.name)}</title></path>')


def _stack_edge(series: Series, steps: list[tuple[float, float, float]], color: str, xs: Scale, ys: Scale) -> str:
    """The top edge of a band, in the series' colour."""
    if not steps or not any(t > b for _, b, t in steps):
        return ""
    return (f'<path class="series" data-series="{escape(series.name)}" data-style="stack" '
            f'd="{step_path([(x, t) for x, _, t in steps], xs, ys)}" fill="none" stroke="{color}" stroke-width="2" '
            'shape-rendering="crispEdges"/>')


def step_path(points: Sequence[tuple[float, float]], xs: Scale, ys: Scale) -> str:
    """``M x y H x V y ...``: each value held until the next point, on whole pixels."""
    def px(value: float) -> str:
        return str(round(value))

    (first_x, first_y), rest = points[0], points[1:]
    out = [f"M{px(xs(first_x))} {px(ys(first_y))}"]
    previous = first_y
    for x, y in rest:
        out.append(f"H{px(xs(x))}")
        if y != previous:
            out.append(f"V{px(ys(y))}")
            previous = y
    return " ".join(out)


def _markers(chart: Chart, xs: Scale, y0: float, height: float) -> list[str]:
    out = []
    for m in chart.markers:
        x = _num(xs(m.x))
        color = BAD if m.bad else "#6b7280"
        out.append(f'<g class="marker"><title>{escape(m.label)} (+{m.x:.2f} s)</title>'
                   f'<line x1="{x}" x2="{x}" y1="{y0}" y2="{y0 + height}" stroke="{color}" stroke-width="1.5" '
                   f'stroke-dasharray="3 3"/></g>')
    return out


def _axis_labels(chart: Chart, x0: float, y0: float, width: float, height: float) -> list[str]:
    middle = y0 + height / 2
    return [f'<text x="{x0 + width / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle" fill="{TEXT}">'
            "seconds from the run start</text>",
            f'<text x="12" y="{middle}" font-size="11" text-anchor="middle" fill="{TEXT}" '
            f'transform="rotate(-90 12 {middle})">{escape(chart.y_label)}</text>']


def legend_items(chart: Chart, palette: Palette) -> list[tuple[str, str, str]]:
    """(name, colour, style) per series, for the HTML legend beside the chart."""
    return [(s.name, palette(s.key), s.style) for s in chart.series]
