"""Comparing two sets of figures (now against before, one code version against the previous)
with a rule for noise, so health says "changed" only when the runs seen make it so.

The rules (the README's Monitoring section states them too):

- fewer than `min_runs` ended runs on either side: no verdict ("too few runs");
- the failure rate changed when the two-proportion z statistic is at least 3 and the rates
  differ by at least one percentage point;
- a p50 or p95 changed when it moved by more than `slower` (25 %) of the earlier value and by
  at least a floor, and the whole distribution moved the same way: a Mann-Whitney rank test
  over the histogram buckets gives |z| >= 3 (so a few runs stalled by a busy machine do not
  make a change; every run slower does);
- which figures: when both sides recorded what their attempts cost (runner.attempt.effort), the CPU
  time (floor 10 ms) and the wall time less run-queue wait (floor 100 ms), which a loaded
  host does not inflate; else (figures of older workers) the duration and the queue wait
  (floor 100 ms), which it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from runner.config import HealthThresholds
from runner.monitoring.durations import rounded_duration
from runner.record import RunState
from runner.runs.figures import Histogram, TaskFigures

Z_CHANGED = 3.0
RATE_POINTS = 0.01
SECONDS_FLOOR = 0.1
CPU_FLOOR = 0.01


@dataclass(frozen=True, slots=True)
class Change:
    """One figure that changed: its name, before, after, and whether it got worse."""

    name: str
    before: float
    after: float
    worse: bool

    def text(self) -> str:
        if self.name == "failures":
            return f"failures {self.before:.1%} -> {self.after:.1%}"
        if self.before > 0:
            return f"{self.name} {(self.after - self.before) / self.before:+.0%}"
        return f"{self.name} {rounded_duration(self.before)} -> {rounded_duration(self.after)}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """What changed for one task between `before` and `after`; `enough` false: no verdict."""

    task: str
    enough: bool
    runs: tuple[int, int]
    changes: tuple[Change, ...] = field(default=())

    @property
    def worse(self) -> bool:
        return any(c.worse for c in self.changes)

    def text(self) -> str:
        if not self.enough:
            return f"{self.task}: too few runs ({self.runs[0]} before, {self.runs[1]} after)"
        if not self.changes:
            return f"{self.task} unchanged"
        slower = any(c.worse and c.name != "failures" for c in self.changes)
        return f"{self.task} {'slower: ' if slower else ''}" + ", ".join(
            c.text() for c in self.changes
        )


def rate_changed(failed: tuple[int, int], ended: tuple[int, int]) -> bool:
    """Whether failed[i]/ended[i] differ beyond noise (z >= 3 and >= 1 point apart)."""
    (f1, f2), (n1, n2) = failed, ended
    if not n1 or not n2:
        return False
    p1, p2 = f1 / n1, f2 / n2
    if abs(p2 - p1) < RATE_POINTS:
        return False
    pooled = (f1 + f2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return spread == 0 or abs(p2 - p1) / spread >= Z_CHANGED


def seconds_changed(
    before: float | None, after: float | None, slower: float, floor: float = SECONDS_FLOOR
) -> bool:
    if before is None or after is None:
        return False
    return abs(after - before) > max(floor - 1e-9, slower * before)


def shift_z(before: Histogram, after: Histogram) -> float:
    """Mann-Whitney's z of `after` against `before`, from bucket counts (observations in one
    bucket count as ties); positive when `after` is larger. 0 without observations."""
    n1, n2 = before.count, after.count
    if not n1 or not n2:
        return 0.0
    u, below = 0.0, 0
    for a, b in zip(before.buckets, after.buckets, strict=True):
        u += b * (below + a / 2)
        below += a
    spread = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (u - n1 * n2 / 2) / spread


# (name, histogram, quantile, floor): what the verdict reads, by what the figures have
EFFORT = (
    ("cpu p50", "cpu", 0.5, CPU_FLOOR),
    ("cpu p95", "cpu", 0.95, CPU_FLOOR),
    ("busy p50", "busy", 0.5, SECONDS_FLOOR),
    ("busy p95", "busy", 0.95, SECONDS_FLOOR),
)
WALL = (("p50", "dur", 0.5, SECONDS_FLOOR), ("p95", "dur", 0.95, SECONDS_FLOOR),
        ("wait p95", "wait", 0.95, SECONDS_FLOOR))  # fmt: skip


def compare(
    task: str, before: TaskFigures, after: TaskFigures, limits: HealthThresholds
) -> Comparison:
    """Per the rules above: failure rate, then CPU and busy time (else duration and wait)."""
    runs = (before.runs_ended, after.runs_ended)
    if min(runs) < limits.min_runs:
        return Comparison(task, enough=False, runs=runs)
    changes: list[Change] = []
    failed = (before.counts[RunState.FAILED], after.counts[RunState.FAILED])
    if rate_changed(failed, runs):
        rates = (failed[0] / runs[0], failed[1] / runs[1])
        changes.append(Change("failures", rates[0], rates[1], worse=rates[1] > rates[0]))
    costed = before.cpu.count and after.cpu.count
    for name, histogram, q, floor in EFFORT if costed else WALL:
        earlier, later = before.histogram(histogram), after.histogram(histogram)
        b, a = earlier.quantile(q), later.quantile(q)
        if b is None or a is None or not seconds_changed(b, a, limits.slower, floor):
            continue
        z = shift_z(earlier, later)
        if abs(z) >= Z_CHANGED and (z > 0) == (a > b):
            changes.append(Change(name, b, a, worse=a > b))
    return Comparison(task, enough=True, runs=runs, changes=tuple(changes))
