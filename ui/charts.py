"""Server-rendered SVG charts (no script, no CDN): a bar or line chart of one series, e.g. a value per day.

Used by the tenant console's Usage tab (and meant for /admin). The markup is plain SVG that the page's CSP allows:
no inline style (colours come from classes the page's stylesheet sets, light and dark), a `viewBox` and
`width="100%"` so a chart fits a 390 px phone without sideways scrolling, and for screen readers a `role="img"`
named by its <title> and described by a <desc> that says the total and the largest point; every bar or point has
its own <title> (a tooltip too) and carries its key and value in `data-key` / `data-value` for tests. A chart
with nothing to show (no points, or every one 0) says so in words across its frame ("No usage in this range", or
the caller's `empty`), not as a flat line a reader must interpret.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 16, 30  # room for the value axis (left) and the key labels (bottom)
Format = Callable[[float], str]
EMPTY = "No usage in this range"
NO_COST = "No cost in this range"  # usage there, but only of free models (the in-process one)


def plain(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def usd(value: float) -> str:
    return f"${value:,.4f}" if 0 < abs(value) < 0.01 else f"${value:,.2f}"


@dataclass(frozen=True)
class Limit:
    """A horizontal line across the chart: a quota or a budget, named (drawn when it fits the scale or above)."""

    value: float
    label: str


def days(start: date, end: date, values: dict[str, float]) -> list[tuple[str, float]]:
    """Every day of [start, end] with its value (0 when none): a per-day report lists only days with data."""
    out = []
    day = start
    while day <= end:
        out.append((day.isoformat(), float(values.get(day.isoformat(), 0))))
        day += timedelta(days=1)
    return out


def _nice_top(top: float) -> float:
    """A round upper bound for the value axis (1, 2, 2.5, 5 × 10^n) at or above `top`."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return 10 * magnitude


def _frame(chart_id: str, title: str, desc: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{escape(chart_id)}-t">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>{body}</svg>')


def _axes(top: float, fmt: Format, points: Sequence[tuple[str, float]], slot: float) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    out = []
    for i in range(3):  # 0, half, top
        v = top * i / 2
        y = TOP + plot_h - plot_h * i / 2
        out.append(f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="chart-axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(v))}</text>')
    if points:  # the first, middle and last keys under the axis: readable at any width
        picks = sorted({0, len(points) // 2, len(points) - 1})
        for i in picks:
            x = LEFT + slot * (i + 0.5)
            # A few wide slots (e.g. models, tenants) centre their labels; many narrow ones (days) keep the first
            # and last inside the frame.
            anchor = ("middle" if len(points) <= 3 else "start" if i == 0 else "end" if i == len(points) - 1
                      else "middle")
            out.append(f'<text class="chart-axis" x="{x:.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">'
                       f'{escape(_short(points[i][0]))}</text>')
    return "".join(out)


def _short(key: str) -> str:
    return key[:18] + "…" if len(key) > 19 else key


def _limit_line(limit: Limit | None, top: float, fmt: Format) -> str:
    if limit is None or limit.value > top:
        return ""
    plot_h = HEIGHT - TOP - BOTTOM
    y = TOP + plot_h - plot_h * limit.value / top
    return (f'<line class="chart-limit" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="chart-limit-label" x="{WIDTH - RIGHT}" y="{y - 4:.1f}" text-anchor="end">'
            f'{escape(limit.label)}: {escape(fmt(limit.value))}</text>')


def _is_empty(points: Sequence[tuple[str, float]]) -> bool:
    return not any(v for _, v in points)


def _empty_note(points: Sequence[tuple[str, float]], empty: str) -> str:
    if not _is_empty(points):
        return ""
    x, y = (LEFT + WIDTH - RIGHT) / 2, TOP + (HEIGHT - TOP - BOTTOM) / 2
    return f'<text class="chart-empty" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(empty)}</text>'


def _describe(title: str, points: Sequence[tuple[str, float]], fmt: Format, unit: str,
              limit: Limit | None, empty: str = EMPTY) -> str:
    if _is_empty(points):
        return f"{title}: {empty}."
    total = sum(v for _, v in points)
    key, peak = max(points, key=lambda p: p[1])
    text = (f"{len(points)} points from {points[0][0]} to {points[-1][0]}; total {fmt(total)} {unit}; "
            f"highest {fmt(peak)} {unit} at {key}.")
    if limit is not None:
        text += f" {limit.label}: {fmt(limit.value)} {unit}."
    return text


def _scale(points: Sequence[tuple[str, float]], limit: Limit | None) -> float:
    highest = max([v for _, v in points] + [0.0])
    # The limit is drawn only when the data comes within 4x of it: a budget far above the spend would flatten
    # every bar to nothing.
    if limit is not None and limit.value <= 4 * highest:
        highest = max(highest, limit.value)
    return _nice_top(highest)


def bar_chart(points: Sequence[tuple[str, float]], *, chart_id: str, title: str, unit: str = "",
              fmt: Format = plain, limit: Limit | None = None,
              empty: str = EMPTY) -> Markup:
    """One bar per (key, value), in the order given."""
    top = _scale(points, limit)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(points))
    bar_w = max(1.0, slot * 0.7)
    bars = []
    for i, (key, value) in enumerate(points):
        h = plot_h * value / top
        x = LEFT + slot * i + (slot - bar_w) / 2
        bars.append(f'<rect class="chart-bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                    f'height="{h:.1f}" data-key="{escape(key)}" data-value="{value:g}">'
                    f'<title>{escape(key)}: {escape(fmt(value))} {escape(unit)}</title></rect>')
    body = _axes(top, fmt, points, slot) + "".join(bars) + _limit_line(limit, top, fmt) + _empty_note(points, empty)
    return _frame(chart_id, title, _describe(title, points, fmt, unit, limit, empty), body)


def line_chart(points: Sequence[tuple[str, float]], *, chart_id: str, title: str, unit: str = "",
               fmt: Format = plain, limit: Limit | None = None,
               empty: str = EMPTY) -> Markup:
    """A line through (key, value) in the order given, with a marked point each."""
    top = _scale(points, limit)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(points))
    coords = [(LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * v / top) for i, (_, v) in enumerate(points)]
    line = (f'<polyline class="chart-line" fill="none" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>'
            if len(coords) > 1 else "")
    marks = "".join(
        f'<circle class="chart-point" cx="{x:.1f}" cy="{y:.1f}" r="3" data-key="{escape(k)}" data-value="{v:g}">'
        f'<title>{escape(k)}: {escape(fmt(v))} {escape(unit)}</title></circle>'
        for (x, y), (k, v) in zip(coords, points, strict=True))
    body = _axes(top, fmt, points, slot) + line + marks + _limit_line(limit, top, fmt) + _empty_note(points, empty)
    return _frame(chart_id, title, _describe(title, points, fmt, unit, limit, empty), body)
