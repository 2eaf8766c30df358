"""Figures: what the workers did, counted inside the scripts that begin and release attempts.

Every attempt adds, per task and queue, `started` and a queue-wait observation when it begins
(`BEGIN_ATTEMPT`), and its outcome (`succeeded`, `failed`, `retried`, ...) and a duration
observation when it ends (`RELEASE_ATTEMPT`): no round trip of its own. Each figure goes to

- the totals (`Keys.figures_total`), never expiring and only ever growing: what `/metrics`
  exposes as counters and cumulative histogram buckets;
- the minute and hour windows (`Keys.figures_window`, kept 48 h and 30 days), also per code
  version: the console's charts and the "slow"/"failing" answers of health;
- the version's own totals (`Keys.figures_version`, kept 30 days after its last run): the
  deploy comparison, by version rather than by clock time.

Histograms have fixed log-spaced buckets from 10 ms to 6 h (`BOUNDS`, upper bounds in seconds,
then +Inf); a field `dur:3` counts the observations in bucket 3 alone (not cumulative).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunState

BOUNDS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0,
    100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 21600.0,
)  # fmt: skip
MINUTE = 60
HOUR = 3600
MINUTE_TTL = 48 * HOUR
HOUR_TTL = 30 * 24 * HOUR
VERSION_TTL = 30 * 24 * HOUR
RETRIED = "retried"  # an attempt that ended `retrying`
OUTCOMES = (RunState.SUCCEEDED, RunState.FAILED, RETRIED, RunState.CANCELLED)
COUNTS = ("started", *OUTCOMES)
HISTOGRAMS = ("wait", "dur", "cpu", "busy")  # queue wait, duration; CPU, wall less CPU wait

# Lua: `record_figures(fig, task, queue, version, counts, observed, effort)` adds `counts`
# (name -> n) and `observed` (histogram -> seconds) to the four figure hashes `fig` = {total,
# minute, hour, version} (KEYS) with their TTLs `fig.ttl` = {minute, hour, version} (ARGV),
# and `effort` (cpu, busy -> seconds: runner.attempt.effort) to the version's hash alone, as bucket
# counts without a sum (one HINCRBY each: the deploy verdict needs no more).
RECORD_FIGURES = (
    "local BOUNDS = {"
    + ", ".join(repr(b) for b in BOUNDS)
    + "}\n"
    + """
local function figure_bucket(seconds)
  for i, bound in ipairs(BOUNDS) do if seconds <= bound then return i end end
  return #BOUNDS + 1
end

local function record_figures(fig, task, queue, version, counts, observed, effort)
  local plain = task .. '|' .. queue .. '|'
  local versioned = plain .. version .. '|'
  local targets = {{fig.total, plain}, {fig.minute, versioned}, {fig.hour, versioned},
                   {fig.version, plain}}
  for _, target in ipairs(targets) do
    local key, base = target[1], target[2]
    for name, n in pairs(counts) do redis.call('HINCRBY', key, base .. name, n) end
    for name, seconds in pairs(observed) do
      if seconds < 0 then seconds = 0 end
      redis.call('HINCRBY', key, base .. name .. ':' .. figure_bucket(seconds), 1)
      redis.call('HINCRBYFLOAT', key, base .. name .. '_sum', seconds)
    end
  end
  for name, seconds in pairs(effort or {}) do  -- the deploy verdict's: the version's alone
    redis.call('HINCRBY', fig.version, plain .. name .. ':' .. figure_bucket(seconds), 1)
  end
  redis.call('EXPIRE', fig.minute, fig.ttl[1])
  redis.call('EXPIRE', fig.hour, fig.ttl[2])
  redis.call('EXPIRE', fig.version, fig.ttl[3])
end
"""
)


def figure_keys(keys: Keys, version: str, now: float) -> list[str]:
    """The four hashes an attempt's figures go to at `now` (the scripts' KEYS, in order)."""
    minute, hour = int(now // MINUTE) * MINUTE, int(now // HOUR) * HOUR
    return [
        keys.figures_total,
        keys.figures_window("m", minute),
        keys.figures_window("h", hour),
        keys.figures_version(version),
    ]


FIGURE_TTLS = (MINUTE_TTL, HOUR_TTL, VERSION_TTL)


@dataclass
class Histogram:
    """Observation counts per bucket (len(BOUNDS) + 1, the last is +Inf) and their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, other: Histogram) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.total += other.total

    def cumulative(self) -> list[int]:
        """Counts of observations <= each bound, then the count of all (Prometheus' `le`)."""
        running, out = 0, []
        for n in self.buckets:
            running += n
            out.append(running)
        return out

    def quantile(self, q: float) -> float | None:
        """The q-quantile, linearly interpolated inside its bucket (as Prometheus'
        histogram_quantile does); None without observations."""
        count = self.count
        if not count:
            return None
        rank, seen = q * count, 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                low = BOUNDS[i - 1] if i > 0 else 0.0
                high = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1]
                return low + (high - low) * max(0.0, rank - seen) / n
            seen += n
        return BOUNDS[-1]


@dataclass
class TaskFigures:
    """One task's (or task and queue's) figures over some window."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    wait: Histogram = field(default_factory=Histogram)
    duration: Histogram = field(default_factory=Histogram)
    cpu: Histogram = field(default_factory=Histogram)  # per version only (runner.attempt.effort)
    busy: Histogram = field(default_factory=Histogram)  # wall less run-queue wait, likewise

    def histogram(self, name: str) -> Histogram:
        """The histogram a figure field names ('wait', 'dur', 'cpu', 'busy')."""
        return {"wait": self.wait, "dur": self.duration, "cpu": self.cpu, "busy": self.busy}[name]

    @property
    def finished(self) -> int:
        """Attempts that ended with an outcome (a retried attempt counts as one)."""
        return sum(self.counts[n] for n in OUTCOMES)

    @property
    def runs_ended(self) -> int:
        """Runs that succeeded or failed for good (retried attempts are not runs ending)."""
        return self.counts[RunState.SUCCEEDED] + self.counts[RunState.FAILED]

    @property
    def failure_rate(self) -> float | None:
        """Runs failed for good over runs ended; None when none ended."""
        ended = self.runs_ended
        return self.counts[RunState.FAILED] / ended if ended else None

    def add(self, other: TaskFigures) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        for name in HISTOGRAMS:
            self.histogram(name).add(other.histogram(name))


def parse(raw: Mapping[bytes, bytes], *, versioned: bool) -> dict[tuple[str, ...], TaskFigures]:
    """A figures hash as {(task, queue) or (task, queue, version): TaskFigures}."""
    out: dict[tuple[str, ...], TaskFigures] = defaultdict(TaskFigures)
    width = 3 if versioned else 2
    for field_name, value in raw.items():
        parts = field_name.decode().split("|")
        if len(parts) != width + 1:
            continue
        figures, name = out[tuple(parts[:width])], parts[width]
        histogram_name, _, bucket = name.partition(":")
        if name.endswith("_sum") and name.removesuffix("_sum") in HISTOGRAMS:
            figures.histogram(name.removesuffix("_sum")).total += float(value)
        elif bucket and histogram_name in HISTOGRAMS:
            figures.histogram(histogram_name).buckets[int(bucket) - 1] += int(value)
        else:
            figures.counts[name] = figures.counts.get(name, 0) + int(value)
    return dict(out)


class Figures:
    """Reads the figures the workers recorded (the console's charts, health, /metrics)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.prefix)

    def totals(self) -> dict[tuple[str, str], TaskFigures]:
        """Everything since the beginning, per (task, queue): monotonic."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.figures_total)  # type: ignore[assignment]
        return {(k[0], k[1]): v for k, v in parse(raw, versioned=False).items()}

    def version(self, version: str) -> dict[str, TaskFigures]:
        """Everything code `version` did (its last 30 days), per task, queues summed."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.figures_version(version))  # type: ignore[assignment]
        return _by_task(parse(raw, versioned=False).items())

    def windows(
        self, *, since: float, until: float | None = None, shape: str = "m"
    ) -> list[tuple[int, dict[tuple[str, str, str], TaskFigures]]]:
        """(start, {(task, queue, version): figures}) per minute ('m', the last 48 h) or hour
        ('h', the last 30 days) from `since` to `until` (default now), oldest first; a window
        where nothing happened is there, empty."""
        step = MINUTE if shape == "m" else HOUR
        until = time.time() if until is None else until
        starts = list(range(int(since // step) * step, int(until // step) * step + 1, step))
        pipe = self.redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self.keys.figures_window(shape, start))
        out = []
        for start, raw in zip(starts, pipe.execute(), strict=True):
            parsed = parse(raw, versioned=True)
            out.append((start, {(k[0], k[1], k[2]): v for k, v in parsed.items()}))
        return out

    def per_task(self, *, since: float, until: float | None = None) -> dict[str, TaskFigures]:
        """Per task, queues and versions summed, over [since, until]: minute windows for the
        last 48 h, hour windows further back (whole windows: `since` is rounded down)."""
        until = time.time() if until is None else until
        shape = "m" if until - since <= MINUTE_TTL and time.time() - since <= MINUTE_TTL else "h"
        items = [
            ((task, queue), figures)
            for _, window in self.windows(since=since, until=until, shape=shape)
            for (task, queue, _version), figures in window.items()
        ]
        return _by_task(items)


def _by_task(items: Iterable[tuple[tuple[str, ...], TaskFigures]]) -> dict[str, TaskFigures]:
    out: dict[str, TaskFigures] = defaultdict(TaskFigures)
    for key, figures in items:
        out[key[0]].add(figures)
    return dict(out)
