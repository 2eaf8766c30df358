"""The last 24 hours in figures for the overview: runs finished per 10 minutes, p95 duration
and queue wait per task, and where the code version changed. Read from the newest run records
(at most SCAN_CAP of them)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from runner.record import RunState, texts
from runner.web.console import Console
from runner.web.listing import SCAN_CAP

DAY = 86_400.0
STEP = 600.0
BUCKETS = int(DAY // STEP)
_FIELDS = ("state", "task", "created_at", "started_at", "finished_at", "code_version")


@dataclass
class Figures:
    """Per-bucket series over [start, start + DAY), oldest bucket first."""

    start: float
    step: float = STEP
    succeeded: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    failed: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    duration_p95: dict[str, list[float | None]] = field(default_factory=dict)
    wait_p95: dict[str, list[float | None]] = field(default_factory=dict)
    marks: list[tuple[float, str]] = field(default_factory=list)
    day_p95: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(self.succeeded) + self.failed_total

    @property
    def failed_total(self) -> int:
        return sum(self.failed)

    def slow_text(self) -> str:
        if not self.day_p95:
            return "no runs finished in 24 h"
        shown = ", ".join(f"{t} {s:.2f} s" for t, s in sorted(self.day_p95.items()))
        return f"p95 duration {shown}"

    def deploy_text(self) -> str:
        if not self.marks:
            return "no new code version in 24 h"
        ts, label = self.marks[-1]
        return f"{label} first ran {int((self.start + DAY - ts) // 60)} min ago"


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def day_figures(console: Console, *, now: float) -> Figures:
    """The figures of the runs created in the last 24 hours (newest SCAN_CAP)."""
    start = now - DAY
    figures = Figures(start=start)
    tokens = texts(
        console.redis.zrevrangebyscore(console.keys.runs, now, start, start=0, num=SCAN_CAP)
    )
    pipe = console.redis.pipeline(transaction=False)
    for token in tokens:
        pipe.hmget(console.keys.run(token), *_FIELDS)
    durations: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in range(BUCKETS)])
    waits: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in range(BUCKETS)])
    versions: list[tuple[float, str]] = []
    for raw in pipe.execute():
        state, task, created, started, finished, version = texts([v or b"" for v in raw])
        if state not in (RunState.SUCCEEDED, RunState.FAILED) or not finished:
            continue
        end = float(finished)
        i = int((end - start) // STEP)
        if not 0 <= i < BUCKETS:
            continue
        (figures.succeeded if state == RunState.SUCCEEDED else figures.failed)[i] += 1
        if started:
            durations[task][i].append(end - float(started))
            waits[task][i].append(max(0.0, float(started) - float(created or started)))
        if version:
            versions.append((end, version))
    figures.duration_p95 = {t: [p95(b) for b in bs] for t, bs in durations.items()}
    figures.wait_p95 = {t: [p95(b) for b in bs] for t, bs in waits.items()}
    figures.day_p95 = {t: p95([v for b in bs for v in b]) or 0.0 for t, bs in durations.items()}
    figures.marks = _version_changes(sorted(versions))
    return figures


def _version_changes(finished: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """Where the code version of finished runs changed: (first time seen, version)."""
    marks: list[tuple[float, str]] = []
    previous = None
    for ts, version in finished:
        if previous is not None and version != previous:
            marks.append((ts, version))
        previous = version
    return marks
