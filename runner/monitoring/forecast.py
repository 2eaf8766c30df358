"""When will the backlog be done? Per queue: its depth, how fast runs arrive and start over the
last 10 minutes and the last hour, and a forecast of when it clears at the last 10 minutes'
pace, or why there is none.

What started comes from the figures (attempts started on the queue, per minute); what
arrived is what started plus how much the depth grew since the reaper's sample of 10 minutes
(or an hour) ago (runner.runs.backlog). The depth falls at started minus arrived a minute: a
queue clears in depth / that, when it falls. No number when nothing was sampled that long
ago, when nothing started, when the queue does not shrink ("growing 12/min: will not clear at
this rate"), or when the starts per minute vary too much for a pace (their coefficient of
variation over the window's whole minutes above `NOISY`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from runner.config import Settings
from runner.monitoring.durations import rounded_duration
from runner.runs.backlog import Depth, depths_now, sampled
from runner.runs.figures import HOUR, MINUTE, Figures, TaskFigures

Window = dict[tuple[str, str, str], TaskFigures]  # one minute's figures by task, queue, version

WINDOW = 10 * MINUTE  # the pace a forecast assumes: the last 10 minutes'
NOISY = 1.0  # starts a minute varying more than this (stdev / mean): no forecast


@dataclass(frozen=True, slots=True)
class Rates:
    """Runs a minute that arrived on a queue and that started there, over a window."""

    arrived: float
    started: float


@dataclass(frozen=True, slots=True)
class Backlog:
    """One queue's backlog: depth, the rates of the last 10 minutes and hour (None: no depth
    sampled that long ago), the seconds until it clears (None: no forecast) and the verdict."""

    queue: str
    depth: int
    recent: Rates | None
    hour: Rates | None
    drain_seconds: float | None
    verdict: str

    def line(self) -> str:
        rates = [f"{label} in {r.arrived:.1f}/min, out {r.started:.1f}/min"
                 for label, r in (("10 min", self.recent), ("1 h", self.hour)) if r]  # fmt: skip
        shown = f" ({'; '.join(rates)})" if rates else ""
        return f"{self.queue}: {self.depth} queued{shown}: {self.verdict}"


def rates(depth: int, then: Depth | None, started: int, now: float) -> Rates | None:
    """The rates since sample `then`, with `started` attempts started meanwhile."""
    if then is None or now - then.at < MINUTE:
        return None
    minutes = (now - then.at) / MINUTE
    return Rates(arrived=max(0.0, started + depth - then.jobs) / minutes, started=started / minutes)


def forecast(
    queue: str, depth: int, *, recent: Rates | None, hour: Rates | None,
    starts_per_minute: Sequence[int] = (),
) -> Backlog:  # fmt: skip
    """The verdict on one queue from its figures (`starts_per_minute`: the whole minutes of
    the window, for the noise test)."""

    def said(verdict: str, seconds: float | None = None) -> Backlog:
        return Backlog(queue, depth, recent, hour, seconds, verdict)

    if depth == 0:
        return said("empty", 0.0)
    if recent is None:
        return said("no forecast yet: the depth was not sampled 10 minutes ago")
    if recent.started == 0:
        return said("nothing started in 10 minutes: will not clear (does a worker serve it?)")
    falls = recent.started - recent.arrived
    if falls <= 0:
        grows = -falls
        return said(f"growing {grows:.1f}/min: will not clear at this rate" if grows
                    else "not shrinking: will not clear at this rate")  # fmt: skip
    if len(starts_per_minute) >= 3:
        mean = statistics.fmean(starts_per_minute)
        if mean and statistics.pstdev(starts_per_minute) / mean > NOISY:
            return said("the pace varies too much for a forecast")
    seconds = depth / falls * MINUTE
    return said(f"clears in ~{rounded_duration(seconds)}", seconds)


def starts_per_minute(windows: Sequence[tuple[int, Window]], queue: str) -> dict[int, int]:
    """Attempts started on `queue` in each minute of `windows` (`Figures.windows`)."""
    return {start: sum(f.counts.get("started", 0) for (_t, q, _v), f in window.items()
                       if q == queue)
            for start, window in windows}  # fmt: skip


def backlogs(redis: Redis, settings: Settings, *, now: float | None = None) -> list[Backlog]:
    """Every queue with runs queued, or with runs started within the hour, by name."""
    depths = depths_now(redis, settings)
    now = time.time() if now is None else now
    minute = int(now // MINUTE) * MINUTE
    then, hour_ago = (
        sampled(redis, settings, minute - WINDOW),
        sampled(redis, settings, minute - HOUR),
    )
    windows = Figures(redis, settings).windows(since=minute - HOUR, until=now)
    out = []
    for queue, depth in depths.items():
        per_minute = starts_per_minute(windows, queue)
        started_hour = sum(per_minute.values())
        if depth.jobs == 0 and not started_hour:
            continue
        recent_minutes = [n for start, n in per_minute.items() if start >= minute - WINDOW]
        recent = rates(depth.jobs, then.get(queue), sum(recent_minutes), now)
        hour = rates(depth.jobs, hour_ago.get(queue), started_hour, now)
        whole = recent_minutes[:-1]  # the current minute is not over
        out.append(forecast(queue, depth.jobs, recent=recent, hour=hour, starts_per_minute=whole))
    return out
