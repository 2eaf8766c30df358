"""The last 24 hours in figures for the overview, from the per-minute windows the workers
record (runner.runs.figures): runs succeeded and failed per 10 minutes, p95 duration and queue wait
per task, and the deploy marks (runner.runs.deploys)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from runner.record import RunState
from runner.runs.deploys import DeployMarks
from runner.runs.figures import Figures, Histogram
from runner.web.console import Console

DAY = 86_400
STEP = 600  # seconds per bar: ten one-minute windows
BUCKETS = DAY // STEP


@dataclass
class DayFigures:
    """Per-bucket series over [start, start + DAY), oldest bucket first, and deploy marks."""

    start: float
    step: float = STEP
    succeeded: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    failed: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    duration_p95: dict[str, list[float | None]] = field(default_factory=dict)
    wait_p95: dict[str, list[float | None]] = field(default_factory=dict)
    marks: list[tuple[float, str]] = field(default_factory=list)


def _histograms() -> list[Histogram]:
    return [Histogram() for _ in range(BUCKETS)]


def day_figures(console: Console, *, now: float) -> DayFigures:
    """The last 24 hours (1,440 minute windows, read in one pipeline) and the marks in them."""
    start = (int(now) // STEP + 1) * STEP - DAY
    day = DayFigures(start=float(start))
    durations: dict[str, list[Histogram]] = defaultdict(_histograms)
    waits: dict[str, list[Histogram]] = defaultdict(_histograms)
    for minute, window in Figures(console.redis, console.settings).windows(since=start, until=now):
        i = (minute - start) // STEP
        if not 0 <= i < BUCKETS:
            continue
        for (task, _queue, _version), figures in window.items():
            day.succeeded[i] += figures.counts.get(RunState.SUCCEEDED, 0)
            day.failed[i] += figures.counts.get(RunState.FAILED, 0)
            durations[task][i].add(figures.duration)
            waits[task][i].add(figures.wait)
    day.duration_p95 = {t: [h.quantile(0.95) for h in hs] for t, hs in durations.items()}
    day.wait_p95 = {t: [h.quantile(0.95) for h in hs] for t, hs in waits.items()}
    marks = DeployMarks(console.redis, console.settings).all(since=start)
    day.marks = [(m.at, m.label or m.version) for m in marks]
    return day
