"""Charts drawn on the server as SVG shapes (the template writes them out, escaping labels):
bars of runs per time bucket, lines of a percentile per task, and deploy marks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

WIDTH, HEIGHT = 640, 160
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 14, 22
PALETTE = ("#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#4b5563")


@dataclass(frozen=True, slots=True)
class Shape:
    """One drawn thing: a rect (x, y, w, h), a line (x, y to w, h), a polyline (points), a
    dot (x, y) or a text (x, y, text)."""

    kind: str
    css: str = ""
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0
    points: str = ""
    text: str = ""
    color: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart ready to draw: its shapes, a legend and a title."""

    title: str
    shapes: list[Shape]
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, css class or color)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT


def _x(ts: float, start: float, end: float) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (ts - start) / max(1.0, end - start)


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / max(top, 1e-9)


def _axes(start: float, end: float, top: float, unit: str) -> list[Shape]:
    shapes = [Shape("line", "axis", x=LEFT, y=HEIGHT - BOTTOM, w=WIDTH - RIGHT, h=HEIGHT - BOTTOM)]
    shapes.append(Shape("text", "label", x=2, y=TOP + 4, text=f"{_number(top)}{unit}"))
    shapes.append(Shape("text", "label", x=2, y=HEIGHT - BOTTOM, text=f"0{unit}"))
    hours = 6 * 3600
    tick = (int(start) // hours + 1) * hours
    while tick < end:
        x = _x(tick, start, end)
        label = datetime.fromtimestamp(tick, UTC).strftime("%H:%M")
        shapes.append(Shape("text", "label", x=x - 14, y=HEIGHT - 6, text=label))
        tick += hours
    return shapes


def _marks(marks: Sequence[tuple[float, str]], start: float, end: float) -> list[Shape]:
    shapes = []
    for ts, label in marks:
        if start <= ts <= end:
            x = _x(ts, start, end)
            shapes.append(Shape("line", "mark", x=x, y=TOP, w=x, h=HEIGHT - BOTTOM))
            shapes.append(Shape("text", "mark-label", x=x + 3, y=TOP + 8, text=label[:24]))
    return shapes


def stacked_bars(
    title: str, *, start: float, step: float, series: Mapping[str, Sequence[int]],
    marks: Sequence[tuple[float, str]] = (),
) -> Chart:  # fmt: skip
    """Bars per bucket (`step` seconds from `start`), one stacked segment per series (CSS
    class `bar-<name>`: `bar-succeeded`, `bar-failed`)."""
    n = max((len(v) for v in series.values()), default=0)
    end = start + step * n
    totals = [sum(v[i] for v in series.values() if i < len(v)) for i in range(n)]
    top = float(max(totals, default=0))
    shapes = _axes(start, end, top, "")
    width = max(1.0, (WIDTH - LEFT - RIGHT) / max(n, 1) - 1)
    for i in range(n):
        base = 0.0
        for name, values in series.items():
            value = values[i] if i < len(values) else 0
            if value:
                y0, y1 = _y(base, top), _y(base + value, top)
                x = _x(start + i * step, start, end)
                shapes.append(Shape("rect", f"bar-{name}", x=x, y=y1, w=width, h=y0 - y1))
                base += value
    shapes += _marks(marks, start, end)
    legend = [(name, f"bar-{name}") for name in series]
    return Chart(title, shapes, legend, empty=top == 0)


def lines(
    title: str, *, start: float, step: float, series: Mapping[str, Sequence[float | None]],
    marks: Sequence[tuple[float, str]] = (), unit: str = " s",
) -> Chart:  # fmt: skip
    """One line per series (a task) through the buckets that have a value."""
    n = max((len(v) for v in series.values()), default=0)
    end = start + step * n
    top = max((v for vs in series.values() for v in vs if v is not None), default=0.0)
    shapes = _axes(start, end, top, unit)
    legend = []
    for k, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[k % len(PALETTE)]
        legend.append((name, color))
        points = [
            (_x(start + (i + 0.5) * step, start, end), _y(value, top))
            for i, value in enumerate(values)
            if value is not None
        ]  # a bucket without runs has no value: the line goes on to the next that has one
        if len(points) == 1:  # a lone value: a dot, as a line of one point is invisible
            shapes.append(Shape("dot", "series", x=points[0][0], y=points[0][1], color=color))
        elif points:
            text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            shapes.append(Shape("polyline", "series", points=text, color=color))
    shapes += _marks(marks, start, end)
    return Chart(title, shapes, legend, empty=top == 0)


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}"
