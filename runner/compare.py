"""Comparing two sets of figures (now against before, one code version against the previous)
with a rule for noise, so health says "changed" only when the runs seen make it so.

The rules (the README's Monitoring section states them too):

- fewer than `min_runs` ended runs on either side: no verdict ("too few runs");
- the failure rate changed when the two-proportion z statistic is at least 3 and the rates
  differ by at least one percentage point;
- a p50 or p95 (duration, queue wait) changed when it moved by more than `slower` (25 %) of
  the earlier value and by at least 100 ms, and the whole distribution moved the same way:
  a Mann-Whitney rank test over the histogram buckets gives |z| >= 3 (so a few runs stalled
  by a busy machine do not make a change; every run slower does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from runner.config import HealthThresholds
from runner.durations import rounded_duration
from runner.figures import Histogram, TaskFigures
from runner.record import RunState

Z_CHANGED = 3.0
RATE_POINTS = 0.01
SECONDS_FLOOR = 0.1


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
        return f"{self.task} " + ", ".join(c.text() for c in self.changes)


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


def seconds_changed(before: float | None, after: float | None, slower: float) -> bool:
    if before is None or after is None:
        return False
    return abs(after - before) >= max(SECONDS_FLOOR, slower * before)


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


def compare(
    task: str, before: TaskFigures, after: TaskFigures, limits: HealthThresholds
) -> Comparison:
    """Per the rules above: failure rate, p50/p95 duration, p95 wait."""
    runs = (before.runs_ended, after.runs_ended)
    if min(runs) < limits.min_runs:
        return Comparison(task, enough=False, runs=runs)
    changes: list[Change] = []
    failed = (before.counts[RunState.FAILED], after.counts[RunState.FAILED])
    if rate_changed(failed, runs):
        rates = (failed[0] / runs[0], failed[1] / runs[1])
        changes.append(Change("failures", rates[0], rates[1], worse=rates[1] > rates[0]))
    for name, histogram_of, q in (
        ("p50", _duration, 0.5), ("p95", _duration, 0.95), ("wait p95", _wait, 0.95),
    ):  # fmt: skip
        earlier, later = histogram_of(before), histogram_of(after)
        b, a = earlier.quantile(q), later.quantile(q)
        if b is None or a is None or not seconds_changed(b, a, limits.slower):
            continue
        z = shift_z(earlier, later)
        if abs(z) >= Z_CHANGED and (z > 0) == (a > b):
            changes.append(Change(name, b, a, worse=a > b))
    return Comparison(task, enough=True, runs=runs, changes=tuple(changes))


def _duration(figures: TaskFigures) -> Histogram:
    return figures.duration


def _wait(figures: TaskFigures) -> Histogram:
    return figures.wait
