"""Figures: what the workers did, counted inside the script that releases an attempt.

Every attempt that ends adds, per task, queue and code version, `started`, its outcome
(`succeeded`, `failed`, `retried`, ...), a queue-wait and a duration observation, and its CPU
and busy time (runner.attempt.effort) to the hash of the current minute (`Keys.figures_window`
'm', kept 48 h), in `RELEASE_ATTEMPT`: eight commands, no round trip of their own. The rest is
rolled up from the minute hashes, off the job's path (`Figures.roll_up`, the reaper's sweep),
once a minute is closed (`CLOSED_AFTER` seconds past its end):

- the totals (`Keys.figures_total`), never expiring and only ever growing: what `/metrics`
  exposes as counters and cumulative histogram buckets;
- the hour windows (`Keys.figures_window` 'h', kept 30 days), per code version;
- the version's own totals (`Keys.figures_version`, kept 30 days after its last run): the
  deploy comparison, by version rather than by clock time.

Readers add the minutes not rolled up yet (`Keys.figures_rolled` says which), read in one
transaction with the rolled-up hash, so every figure is exact whenever it is read.

Histograms have fixed log-spaced buckets from 10 ms to 6 h (`BOUNDS`, upper bounds in seconds,
then +Inf); a field `dur:3` counts the observations in bucket 3 alone (not cumulative).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from runner.config import Settings
from runner.connections.lua import registered
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

CLOSED_AFTER = 120  # a minute is rolled up this long after its end (workers' clocks differ)
EFFORT = ("cpu", "busy")  # rolled up into the version's hash alone (the deploy verdict's)

# Lua: `record_figures(fig, task, queue, version, counts, observed, effort)` adds `counts`
# (name -> n), `observed` (histogram -> seconds: a bucket and the sum) and `effort` (cpu, busy
# -> seconds: a bucket alone) to the minute hash `fig.minute` under task|queue|version, and
# gives the hash its TTL `fig.ttl` when it adds the first count of a field to it.
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
  local base = task .. '|' .. queue .. '|' .. version .. '|'
  local new = false
  for name, n in pairs(counts) do
    if redis.call('HINCRBY', fig.minute, base .. name, n) == n then new = true end
  end
  for name, seconds in pairs(observed) do
    if seconds < 0 then seconds = 0 end
    redis.call('HINCRBY', fig.minute, base .. name .. ':' .. figure_bucket(seconds), 1)
    redis.call('HINCRBYFLOAT', fig.minute, base .. name .. '_sum', seconds)
  end
  for name, seconds in pairs(effort or {}) do
    redis.call('HINCRBY', fig.minute, base .. name .. ':' .. figure_bucket(seconds), 1)
  end
  if new then redis.call('EXPIRE', fig.minute, fig.ttl) end
end
"""
)

# Add one closed minute's figures (planned by `Figures.roll_up`, JSON) to its hour, the totals
# and each version's hash, if the minute before it is the last one rolled up; returns 1, or 0
# (nothing written) when another reaper rolled it up first.
ROLL_UP = """
local rolled = KEYS[1]        -- the start of the last minute rolled up
local hour = KEYS[2]          -- the minute's hour window
local total = KEYS[3]         -- the totals
local expected = ARGV[1]      -- the last minute rolled up, as the caller read it ('' if none)
local minute = ARGV[2]        -- the minute rolled up now
local hour_ttl, version_ttl = ARGV[3], ARGV[4]
local plan = cjson.decode(ARGV[5])  -- {hour = {field = n}, total = {...}, versions = {{...}}}
if (redis.call('GET', rolled) or '') ~= expected then return 0 end
local function add(key, fields)
  for name, n in pairs(fields) do
    if string.sub(name, -4) == '_sum' then redis.call('HINCRBYFLOAT', key, name, n)
    else redis.call('HINCRBY', key, name, n) end
  end
end
add(hour, plan.hour)
add(total, plan.total)
redis.call('EXPIRE', hour, hour_ttl)
for i, fields in ipairs(plan.versions) do
  local version_key = KEYS[3 + i]  -- the hash of the i-th version the minute saw
  add(version_key, fields)
  redis.call('EXPIRE', version_key, version_ttl)
end
redis.call('SET', rolled, minute)
return 1
"""


def minute_key(keys: Keys, now: float) -> str:
    """The hash a run's figures go to at `now` (kept MINUTE_TTL seconds)."""
    return keys.figures_window("m", int(now // MINUTE) * MINUTE)


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
    """Reads the figures the workers recorded (the console's charts, health, /metrics), and
    rolls closed minutes up (`roll_up`)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.prefix)

    def totals(self) -> dict[tuple[str, str], TaskFigures]:
        """Everything since the beginning, per (task, queue): monotonic."""
        raw, minutes = self._with_unrolled(self.keys.figures_total)
        out = {(k[0], k[1]): v for k, v in parse(raw, versioned=False).items()}
        for (task, queue, _version), figures in _unrolled(minutes):
            out.setdefault((task, queue), TaskFigures()).add(_without_effort(figures))
        return out

    def version(self, version: str) -> dict[str, TaskFigures]:
        """Everything code `version` did (its last 30 days), per task, queues summed."""
        raw, minutes = self._with_unrolled(self.keys.figures_version(version))
        items = list(parse(raw, versioned=False).items())
        items += [(k, f) for k, f in _unrolled(minutes) if k[2] == version]
        return _by_task(items)

    def windows(
        self, *, since: float, until: float | None = None, shape: str = "m"
    ) -> list[tuple[int, dict[tuple[str, str, str], TaskFigures]]]:
        """(start, {(task, queue, version): figures}) per minute ('m', the last 48 h) or hour
        ('h', the last 30 days) from `since` to `until` (default now), oldest first; a window
        where nothing happened is there, empty."""
        step = MINUTE if shape == "m" else HOUR
        until = time.time() if until is None else until
        starts = list(range(int(since // step) * step, int(until // step) * step + 1, step))
        if shape == "m":
            pipe = self.redis.pipeline(transaction=False)
            for start in starts:
                pipe.hgetall(self.keys.figures_window(shape, start))
            raws = pipe.execute()
        else:
            raws, minutes = self._hours_with_unrolled(starts)
        out = []
        for start, raw in zip(starts, raws, strict=True):
            parsed = parse(raw, versioned=True)
            window = {(k[0], k[1], k[2]): v for k, v in parsed.items()}
            if shape == "h":
                for key, figures in _unrolled(m for m in minutes if m[0] // HOUR * HOUR == start):
                    window.setdefault(key, TaskFigures()).add(_without_effort(figures))
            out.append((start, window))
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

    def roll_up(self, now: float | None = None) -> int:
        """Add every closed minute not rolled up yet to its hour window, the totals and its
        versions' hashes, oldest first, each minute once whoever else rolls up; returns how
        many minutes it rolled up. The first roll-up on a Redis starts from the last closed
        minute (what came before was counted by the code before this one)."""
        now = time.time() if now is None else now
        last_closed = int((now - MINUTE - CLOSED_AFTER) // MINUTE) * MINUTE
        seen: bytes | None = self.redis.get(self.keys.figures_rolled)  # type: ignore[assignment]
        if seen is None:
            self.redis.set(self.keys.figures_rolled, last_closed, nx=True)
            return 0
        rolled, script = 0, registered(self.redis, ROLL_UP)
        expected = seen.decode()
        first = max(int(expected) + MINUTE, int((now - MINUTE_TTL) // MINUTE) * MINUTE)
        for minute in range(first, last_closed + 1, MINUTE):
            raw = self.redis.hgetall(self.keys.figures_window("m", minute))
            versions, plan = _plan(raw)  # type: ignore[arg-type]
            keys = [self.keys.figures_rolled, self.keys.figures_window("h", minute // HOUR * HOUR)]
            keys += [self.keys.figures_total, *(self.keys.figures_version(v) for v in versions)]
            args: list[str | int] = [expected, minute, HOUR_TTL, VERSION_TTL, json.dumps(plan)]
            if not script(keys=keys, args=args):
                return rolled  # another process is rolling up: it goes on from here
            rolled, expected = rolled + 1, str(minute)
        return rolled

    def _with_unrolled(self, key: str) -> tuple[Mapping[bytes, bytes], list[_Minute]]:
        raws, minutes = self._read_with_unrolled([key])
        return raws[0], minutes

    def _hours_with_unrolled(self, starts: list[int]) -> tuple[list[Any], list[_Minute]]:
        return self._read_with_unrolled([self.keys.figures_window("h", s) for s in starts])

    def _read_with_unrolled(self, keys: list[str]) -> tuple[list[Any], list[_Minute]]:
        """`keys`' hashes and the minutes not rolled up into them yet, read in one transaction
        with the roll-up's mark (again, should a roll-up move it meanwhile)."""
        while True:
            seen = self.redis.get(self.keys.figures_rolled)
            now = time.time()
            earliest = int((now - MINUTE_TTL) // MINUTE) * MINUTE
            first = max(int(seen) + MINUTE, earliest) if seen is not None else earliest
            starts = list(range(first, int(now // MINUTE) * MINUTE + 1, MINUTE))
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.keys.figures_rolled)
            for key in keys:
                pipe.hgetall(key)
            for start in starts:
                pipe.hgetall(self.keys.figures_window("m", start))
            mark, *raws = pipe.execute()
            if mark == seen:
                return raws[: len(keys)], list(zip(starts, raws[len(keys) :], strict=True))


_Minute = tuple[int, Mapping[bytes, bytes]]


def _unrolled(minutes: Iterable[_Minute]) -> Iterator[tuple[tuple[str, str, str], TaskFigures]]:
    for _start, raw in minutes:
        for key, figures in parse(raw, versioned=True).items():
            yield (key[0], key[1], key[2]), figures


def _without_effort(figures: TaskFigures) -> TaskFigures:
    """The figures the totals and hour windows keep (CPU and busy time: the version's alone)."""
    return TaskFigures(counts=dict(figures.counts), wait=figures.wait, duration=figures.duration)


def _plan(raw: Mapping[bytes, bytes]) -> tuple[list[str], dict[str, Any]]:
    """What one minute's hash adds to its hour, the totals and each version's hash."""
    hour: dict[str, float] = {}
    total: dict[str, float] = defaultdict(int)
    by_version: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(int))
    for field_name, value in raw.items():
        parts = field_name.decode().split("|")
        if len(parts) != 4:
            continue
        task, queue, version, name = parts
        n: float = float(value) if name.endswith("_sum") else int(value)
        plain = f"{task}|{queue}|{name}"
        by_version[version][plain] += n
        if name.partition(":")[0] not in EFFORT:
            hour[field_name.decode()] = n
            total[plain] += n
    versions = sorted(by_version)
    plan = {"hour": hour, "total": total, "versions": [by_version[v] for v in versions]}
    return versions, _exact(plan)


def _exact(value: Any) -> Any:
    """Numbers as strings that say them exactly (Lua's cjson keeps 14 digits of a number)."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return repr(value) if isinstance(value, float) else str(value)


def _by_task(items: Iterable[tuple[tuple[str, ...], TaskFigures]]) -> dict[str, TaskFigures]:
    out: dict[str, TaskFigures] = defaultdict(TaskFigures)
    for key, figures in items:
        out[key[0]].add(figures)
    return dict(out)
