"""The console's charts, drawn on the server as SVG from ``GET /api/v1/stats``'s buckets:
stacked bars of counts by outcome, and lines of p50/p99 milliseconds. Only shapes and their
classes come from here; the stylesheet colours them for the light and the dark theme."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from exoplane.stats.service import Bucket, Percentiles

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 8, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str  # the bar's tooltip: when, what, how many


@dataclass(frozen=True, slots=True)
class Line:
    series: str
    points: str  # "x,y x,y ..." for a polyline
    dots: list[tuple[float, float, str]]  # each value: x, y and its tooltip


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    text: str


@dataclass(slots=True)
class Chart:
    """One chart: its title, a summary for screen readers, its shapes and axes."""

    title: str
    summary: str
    series: list[str]
    unit: str
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.rects and not any(line.dots for line in self.lines)


def _scale(peak: float) -> float:
    """A round top for the y axis at or above ``peak``: 1, 2 or 5 times a power of ten."""
    if peak <= 1:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(peak))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= peak)


def _axes(chart: Chart, buckets: Sequence[Bucket], top: float) -> None:
    chart.y_ticks = [
        Tick(TOP + PLOT_H * (1 - share), _number(top * share)) for share in (0, 0.5, 1)
    ]
    count = len(buckets)
    for n in sorted({0, count // 2, count - 1}):
        if 0 <= n < count:
            chart.x_ticks.append(Tick(LEFT + PLOT_W * (n + 0.5) / count, _when(buckets[n].start)))


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def _when(start: datetime) -> str:
    return start.strftime("%H:%M")


def stacked_bars(
    title: str, buckets: Sequence[Bucket], counts: Callable[[Bucket], dict[str, int]]
) -> Chart:
    """Per bucket, a bar of its counts stacked by series (in ``counts``' key order)."""
    series = list(counts(buckets[0])) if buckets else []
    totals = [sum(counts(bucket).values()) for bucket in buckets]
    grand = sum(totals)
    parts = ", ".join(
        f"{sum(counts(bucket)[name] for bucket in buckets)} {name}" for name in series
    )
    chart = Chart(title, f"{grand} in all: {parts}", series, "")
    top = _scale(max(totals, default=0))
    _axes(chart, buckets, top)
    slot = PLOT_W / max(len(buckets), 1)
    for n, bucket in enumerate(buckets):
        base: float = TOP + PLOT_H
        for name, value in counts(bucket).items():
            if value <= 0:
                continue
            height = PLOT_H * value / top
            base -= height
            label = f"{_when(bucket.start)}: {value} {name}"
            chart.rects.append(
                Rect(LEFT + n * slot + slot * 0.1, base, slot * 0.8, height, name, label)
            )
    return chart


def percentile_lines(
    title: str, buckets: Sequence[Bucket], values: Callable[[Bucket], Percentiles]
) -> Chart:
    """Per bucket, its p50 and p99 in milliseconds, as two lines (gaps where none)."""
    found = [values(bucket) for bucket in buckets]
    seen = [v for p in found for v in (p.p50, p.p99) if v is not None]
    p99s = [p.p99 for p in found if p.p99 is not None]
    summary = f"highest p99 {max(p99s)} ms" if p99s else "no values in this range"
    chart = Chart(title, summary, ["p50", "p99"], "ms")
    top = _scale(max(seen, default=0))
    _axes(chart, buckets, top)
    slot = PLOT_W / max(len(buckets), 1)
    for name in ("p50", "p99"):
        dots: list[tuple[float, float, str]] = []
        for n, (bucket, pair) in enumerate(zip(buckets, found, strict=True)):
            value = pair.p50 if name == "p50" else pair.p99
            if value is None:
                continue
            x = LEFT + slot * (n + 0.5)
            y = TOP + PLOT_H * (1 - value / top)
            dots.append((round(x, 1), round(y, 1), f"{_when(bucket.start)}: {name} {value} ms"))
        points = " ".join(f"{x},{y}" for x, y, _ in dots)
        chart.lines.append(Line(name, points, dots))
    return chart


def webhook_charts(buckets: Sequence[Bucket]) -> list[Chart]:
    return [
        stacked_bars("Deliveries by outcome, per hour", buckets, lambda b: b.deliveries),
        percentile_lines("Attempt latency p50 and p99", buckets, lambda b: b.latency_ms),
    ]


def call_charts(buckets: Sequence[Bucket]) -> list[Chart]:
    return [
        stacked_bars("Calls by outcome, per hour", buckets, lambda b: b.calls),
        percentile_lines(
            "Time to first bot audio p50 and p99", buckets, lambda b: b.first_bot_audio_ms
        ),
    ]
