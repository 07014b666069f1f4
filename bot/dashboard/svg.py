"""Tiny server-side SVG charts: lines over a numeric x axis, and grouped or stacked bars.

The page needs no JavaScript and no network: each chart is an inline ``<svg>``. Every
text that reaches the markup (names, labels, tooltips) is escaped here, colours come
from the fixed palette only, and the number of points drawn is bounded, so a chart's
size does not grow with the data behind it. Drawn data carry ``class="series"`` (a
line, with ``data-points``) or ``class="bar"`` (one rectangle per non-zero value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = {"blue": "#2563eb", "green": "#16a34a", "orange": "#ea580c", "red": "#dc2626", "grey": "#6b7280",
           "purple": "#7c3aed", "teal": "#0d9488"}
MAX_POINTS = 1000  # per line; beyond it every k-th point is drawn
MAX_BARS = 400  # categories per bar chart
MAX_MARKERS = 150  # per line: with more points, the line is drawn without a circle per point
MAX_BAR_WIDTH = 48.0  # pixels: a few categories get bars, not walls
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 10, 34


@dataclass(frozen=True, slots=True)
class Series:
    """A line: (x, y) points (y None: a gap), a palette colour, optionally dashed; ``alarms`` mark points red."""

    name: str
    points: Sequence[tuple[float, float | None]]
    color: str = "blue"
    dashed: bool = False
    alarms: Sequence[bool] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Bars:
    """Values per category for one bar series, with a palette colour."""

    name: str
    values: Sequence[float]
    color: str = "blue"


def _color(name: str) -> str:
    return PALETTE.get(name, PALETTE["grey"])


def _fmt(v: float) -> str:
    """A short tick or tooltip number: 1.2k, 35, 0.042."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 1e3:
        return f"{v / 1e3:.1f}k"
    if a >= 10 or v == int(v):
        return f"{v:.0f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def nice_ceiling(v: float, ticks: int = 4, *, integers: bool = False) -> float:
    """The top of an axis at or above ``v`` whose ``ticks`` steps are 1, 2, 2.5 or 5 times a power of ten
    (whole numbers only, with ``integers``: counts)."""
    if not math.isfinite(v) or v <= 0:
        return float(ticks)
    step = max(v / ticks, 1.0) if integers else v / ticks
    base = 10 ** math.floor(math.log10(step))
    for m in (1, 2, 2.5, 5, 10):
        if integers and m * base != int(m * base):
            continue
        if m * base >= step * (1 - 1e-9):
            return m * base * ticks
    return 10 * base * ticks


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def _thin(points: Sequence, limit: int) -> list[int]:
    """Indices of at most ``limit`` evenly spread points, the last one always kept."""
    n = len(points)
    if n <= limit:
        return list(range(n))
    step = math.ceil(n / limit)
    keep = list(range(0, n, step))
    return keep if keep[-1] == n - 1 else [*keep, n - 1]


class _Frame:
    """The plot area and the mapping of data to pixels."""

    def __init__(self, width: int, height: int, x0: float, x1: float, y_max: float, integers: bool = False):
        self.width, self.height = width, height
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y_max = nice_ceiling(y_max, integers=integers)
        self.right, self.bottom = width - _RIGHT, height - _BOTTOM

    def x(self, v: float) -> float:
        return _LEFT + (v - self.x0) / (self.x1 - self.x0) * (self.right - _LEFT)

    def y(self, v: float) -> float:
        return self.bottom - max(0.0, min(v, self.y_max)) / self.y_max * (self.bottom - _TOP)

    def axes(self, y_label: str) -> list[str]:
        out = []
        for i in range(5):
            v = self.y_max * i / 4
            y = self.y(v)
            out.append(f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}"/>')
            out.append(f'<text class="tick" x="{_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{_fmt(v)}</text>')
        out.append(f'<text class="axis" x="12" y="{(_TOP + self.bottom) / 2:.0f}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(_TOP + self.bottom) / 2:.0f})">{escape(y_label)}</text>')
        out.append(f'<line class="axisline" x1="{_LEFT}" y1="{self.bottom}" x2="{self.right}" y2="{self.bottom}"/>')
        return out


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>')


def line_chart(series: Sequence[Series], *, title: str, y_label: str, x_range: tuple[float, float],
               x_ticks: Sequence[tuple[float, str]] = (), y_max: float | None = None, integers: bool = False,
               width: int = 560, height: int = 220) -> str:
    """Lines over a numeric x axis (times as seconds, say); ``x_ticks`` label chosen x values;
    ``integers``: the values are counts, so the axis ticks are whole numbers."""
    values = [p[1] for s in series for p in s.points if _finite(p[1])]
    top = max([*values, y_max or 0.0, 0.0])
    frame = _Frame(width, height, x_range[0], x_range[1], top, integers)
    body = frame.axes(y_label)
    for x, label in x_ticks[:12]:
        if x_range[0] <= x <= x_range[1]:
            px = frame.x(x)
            anchor = "end" if px > frame.right - 24 else "start" if px < _LEFT + 24 else "middle"
            body.append(f'<text class="tick" x="{px:.1f}" y="{frame.bottom + 14}" '
                        f'text-anchor="{anchor}">{escape(label)}</text>')
    for s in series:
        keep = _thin(s.points, MAX_POINTS)
        path, drawn, pen_down = [], 0, False
        for i in keep:
            x, y = s.points[i]
            if not (_finite(x) and _finite(y)):
                pen_down = False
                continue
            path.append(f'{"L" if pen_down else "M"}{frame.x(x):.1f},{frame.y(y):.1f}')
            pen_down, drawn = True, drawn + 1
        if not drawn:
            continue
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        body.append(f'<path class="series" data-points="{drawn}" d="{" ".join(path)}" fill="none" '
                    f'stroke="{_color(s.color)}" stroke-width="2"{dash}><title>{escape(s.name)}</title></path>')
        alarms = list(s.alarms)
        markers = keep if drawn <= MAX_MARKERS and not s.dashed else [i for i in keep if i < len(alarms) and alarms[i]]
        for i in markers:
            x, y = s.points[i]
            if not (_finite(x) and _finite(y)):
                continue
            alarm = i < len(alarms) and alarms[i]
            fill = PALETTE["red"] if alarm else _color(s.color)
            body.append(f'<circle class="pt{" alarm" if alarm else ""}" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" '
                        f'r="{3.5 if alarm else 2.5}" fill="{fill}"><title>{escape(s.name)}: {_fmt(y)}</title>'
                        f'</circle>')
    return _svg(width, height, title, body)


def bar_chart(categories: Sequence[str], bars: Sequence[Bars], *, title: str, y_label: str, stacked: bool = False,
              label_every: int = 1, width: int = 560, height: int = 220) -> str:
    """Bars per category: side by side, or stacked (``stacked``); every ``label_every``-th category is labelled."""
    categories = list(categories)[:MAX_BARS]
    n = len(categories)
    rows = [[float(v) if _finite(v) and v > 0 else 0.0 for v in list(b.values)[:n]] + [0.0] * (n - len(b.values))
            for b in bars]
    if stacked:
        top = max([sum(col) for col in zip(*rows, strict=True)] or [0.0])
    else:
        top = max([v for r in rows for v in r] or [0.0])
    frame = _Frame(width, height, 0, max(n, 1), top, integers=True)  # bars here are counts
    body = frame.axes(y_label)
    slot = (frame.right - _LEFT) / max(n, 1)
    width_each = min(slot * (0.8 if n < 60 else 0.95) / (1 if stacked else max(len(bars), 1)), MAX_BAR_WIDTH)
    inner = width_each if stacked else width_each * max(len(bars), 1)
    chars = max(3, int(slot * max(label_every, 1) / 6.5))
    for c, category in enumerate(categories):
        left = _LEFT + c * slot + (slot - inner) / 2
        base = 0.0
        for b, series in enumerate(bars):
            v = rows[b][c]
            if v <= 0:
                continue
            lo, hi = (base, base + v) if stacked else (0.0, v)
            x = left if stacked else left + b * width_each
            y = frame.y(hi)
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(width_each, 0.5):.1f}" '
                        f'height="{max(frame.y(lo) - y, 0.5):.1f}" fill="{_color(series.color)}">'
                        f'<title>{escape(category)}: {escape(series.name)} {_fmt(v)}</title></rect>')
            base += v if stacked else 0.0
        if c % max(label_every, 1) == 0:
            shown = category if len(category) <= chars else category[: chars - 1] + "…"
            body.append(f'<text class="tick" x="{_LEFT + (c + 0.5) * slot:.1f}" y="{frame.bottom + 14}" '
                        f'text-anchor="middle">{escape(shown)}</text>')
    return _svg(width, height, title, body)


def legend(items: Sequence[tuple[str, str, bool]]) -> str:
    """An HTML legend: (name, palette colour, dashed) per entry."""
    parts = []
    for name, color, dashed in items:
        style = f"border-top:3px {'dashed' if dashed else 'solid'} {_color(color)}"
        parts.append(f'<span class="key"><i style="{style}"></i>{escape(name)}</span>')
    return f'<div class="legend">{"".join(parts)}</div>'
