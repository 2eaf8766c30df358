"""Cron: schedule entries, the minutes (slots) they are due at, and the tick that fires them.

A firing's token is `task@slot` and a tick enqueues all its firings in one `enqueue_many`, so
any number of ticks at once (crontab, clocks, retries) enqueue each slot once. Redis keeps each
entry's last handled slot, only ever moved forward; a tick handles the newest `catch_up` slots
after it: fires them, or skips them while the entry's previous run is active ('skip' overlap).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from redis import Redis

from runner.config import Settings
from runner.connections.lua import registered
from runner.cron.schedule import (
    CronEntry,
    check_schedule,
    floor_minute,
    parse_slot,
    slot_text,
)
from runner.errors import InvalidArguments
from runner.keys import Keys
from runner.logs import into_run_log
from runner.record import ACTIVE, Enqueued, texts
from runner.runs import tracing
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import Task, TaskRegistry
from runner.tokens import slot_token

log = structlog.get_logger("runner.cron.ticks")
# A mark further ahead of a tick's clock than this came from a tick in the future (before such
# ticks were refused), not from a real tick on a host whose clock runs a little ahead.
SKEW = timedelta(minutes=5)

# Move each mark forward to its slot, never back (a tick that planned earlier may write
# later). Slots are ISO minutes, so string order is time order.
_MOVE_CRON_MARKS = """
-- KEYS[i]: a mark (an entry's last handled or last fired slot)
-- ARGV[i]: the slot to move KEYS[i] to; '' leaves it alone
-- ARGV[#KEYS + 1]: the current minute plus SKEW; a mark past it (a tick in the future, from
--   before such ticks were refused) is replaced, or it would hold every real slot until then
local now = ARGV[#KEYS + 1]
for i = 1, #KEYS do
  local mark, slot = KEYS[i], ARGV[i]
  local seen = redis.call('GET', mark)
  if slot ~= '' and (not seen or seen < slot or seen > now) then redis.call('SET', mark, slot) end
end
return 1
"""


class FiringOutcome(StrEnum):
    """What one tick did for one entry."""

    FIRED = "fired"
    SKIPPED = "skipped"
    NOT_DUE = "not_due"


@dataclass(frozen=True, slots=True)
class Firing:
    """What one tick did for one entry: 'fired' (its runs, new or deduplicated), 'skipped'
    (`reason` says why) or 'not_due'."""

    entry: str
    outcome: FiringOutcome
    slots: tuple[datetime, ...] = ()
    runs: tuple[Enqueued, ...] = ()
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: slots as ISO minutes, runs as {token, job_id, state, deduplicated}."""
        slots = [slot_text(s) for s in self.slots]
        return {**asdict(self), "slots": slots, "runs": [asdict(r) for r in self.runs]}


@dataclass(frozen=True, slots=True)
class _Plan:
    entry: CronEntry
    slots: tuple[datetime, ...]
    blocker: str | None = None  # the active run a skipped slot would overlap
    reason: str = ""


class Cron:
    """Fires a schedule's due slots; safe under any number of concurrent ticks."""

    def __init__(
        self, redis: Redis, settings: Settings, *, registry: TaskRegistry,
        entries: Sequence[CronEntry] | None = None,
    ) -> None:  # fmt: skip
        """Raises ConfigError or UnknownTask when the schedule is inconsistent."""
        self.redis = redis
        self.settings = settings
        self.registry = registry
        self.entries = check_schedule(registry.schedule if entries is None else entries, registry)
        self.keys = Keys(settings.prefix)
        self.runs = Runs(redis, settings)
        self.enqueuer = Enqueuer(redis, settings)
        self._move_marks_script = registered(redis, _MOVE_CRON_MARKS)

    def tick(self, at: datetime, *, now: datetime | None = None) -> list[Firing]:
        """Handle every slot due at `at`'s minute, and the missed ones within each entry's
        catch-up; raises InvalidArguments for a minute after `now` (default: the wall clock),
        whose marks would make the real slots up to it look handled, and RedisError when
        Redis fails (a later tick catches the slots up)."""
        minute = floor_minute(at)
        current = floor_minute(now or datetime.now(UTC))
        if minute > current:
            raise InvalidArguments(
                f"--at {slot_text(minute)} is in the future (now {slot_text(current)}); a tick"
                " fires minutes up to now, and a later one would mark the slots before it handled"
            )
        marks = self.marks(now=current)
        busy = self._running_by_task()
        plans = [self._plan(e, minute, marks[e.name], busy) for e in self.entries]
        fires = [p for p in plans if p.slots and p.blocker is None]
        requests = [
            Request(self._task(p.entry), dict(p.entry.args), slot_token(p.entry.task, s))
            for p in fires
            for s in p.slots
        ]
        fired = {r.token: r for r in self._fire(requests, minute)}
        self._move_marks(plans, fires, now=current)
        self.redis.set(self.keys.last_tick, time.time())  # health: is the clock ticking?
        return [self._report(p, minute, fired) for p in plans]

    def _fire(self, requests: list[Request], minute: datetime) -> list[Enqueued]:
        """Enqueue the slots' runs, in a trace of this tick's own (when traced)."""
        if not requests:
            return []
        attributes = {"runner.minute": slot_text(minute), "runner.fired": len(requests)}
        with tracing.new_trace("cron tick", attributes):
            return self.enqueuer.enqueue_many(requests)

    def marks(
        self, *, now: datetime | None = None
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Each entry's last handled slot and last fired slot (None: never). A mark more than
        SKEW after `now` (left by an older runner's tick in the future) counts as never, so it
        cannot make the real slots before it look handled."""
        current = floor_minute(now or datetime.now(UTC))
        names = [e.name for e in self.entries]
        keys = [k for n in names for k in (self.keys.cron_last(n), self.keys.cron_fired(n))]
        values: list[bytes | None] = self.redis.mget(keys) if keys else []  # type: ignore[assignment]
        slots = [parse_slot(v.decode()) if v else None for v in values]
        raw = [s if s is not None and s <= current + SKEW else None for s in slots]
        return {n: (raw[2 * i], raw[2 * i + 1]) for i, n in enumerate(names)}

    def _running_by_task(self) -> dict[str, list[str]]:
        tokens = texts(self.redis.zrange(self.keys.running, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hget(self.keys.run(token), "task")
        busy: dict[str, list[str]] = {}
        for token, task in zip(tokens, pipe.execute(), strict=True):
            if task:
                busy.setdefault(texts([task])[0], []).append(token)
        return busy

    def _plan(
        self, entry: CronEntry, minute: datetime, marks: tuple[datetime | None, datetime | None],
        busy: dict[str, list[str]],
    ) -> _Plan:  # fmt: skip
        last, fired = marks
        slots = tuple(entry.pending(after=last, until=minute))
        if not slots or entry.overlap == "allow":
            return _Plan(entry, slots)
        if fired is not None:
            previous = slot_token(entry.task, fired)
            record = self.runs.get(previous)
            if record is not None and record.state in ACTIVE:
                return _Plan(entry, slots, previous, f"previous run {previous} is {record.state}")
        own = {slot_token(entry.task, s) for s in slots}
        for token in busy.get(entry.task, []):
            if token not in own:
                return _Plan(entry, slots, token, f"run {token} of {entry.task} is running")
        return _Plan(entry, slots)

    def _task(self, entry: CronEntry) -> Task:
        task = self.registry.get(entry.task)
        return replace(task, queue=entry.queue) if entry.queue else task

    def _move_marks(self, plans: Sequence[_Plan], fires: Sequence[_Plan], *, now: datetime) -> None:
        keys: list[str] = []
        slots: list[str] = []
        for plan in (p for p in plans if p.slots):
            newest = slot_text(plan.slots[-1])
            keys += [self.keys.cron_last(plan.entry.name), self.keys.cron_fired(plan.entry.name)]
            slots += [newest, newest if plan in fires else ""]
        if keys:
            self._move_marks_script(keys=keys, args=[*slots, slot_text(now + SKEW)])

    def _report(self, plan: _Plan, minute: datetime, fired: dict[str, Enqueued]) -> Firing:
        entry = plan.entry
        if plan.slots and plan.blocker is None:
            runs = tuple(fired[slot_token(entry.task, s)] for s in plan.slots)
            log.info("cron.fired", entry=entry.name, tokens=[r.token for r in runs],
                     new=[r.token for r in runs if not r.deduplicated])  # fmt: skip
            return Firing(entry.name, FiringOutcome.FIRED, plan.slots, runs)
        if plan.slots:
            self._log_skip(plan)
            return Firing(entry.name, FiringOutcome.SKIPPED, plan.slots, reason=plan.reason)
        if entry.is_due(minute):  # already handled by an earlier (or concurrent) tick
            token = slot_token(entry.task, minute)
            record = self.runs.get(token)
            if record is None:
                why = "an earlier tick skipped it"
                return Firing(entry.name, FiringOutcome.SKIPPED, (minute,), reason=why)
            run = Enqueued(token, job_id=record.job_id, state=record.state, deduplicated=True)
            return Firing(entry.name, FiringOutcome.FIRED, (minute,), (run,))
        upcoming = f"next {slot_text(entry.next_slot(minute))}"
        return Firing(entry.name, FiringOutcome.NOT_DUE, reason=upcoming)

    def _log_skip(self, plan: _Plan) -> None:
        """Log `cron.skipped` on stdout and into the stream of the run the slot would overlap."""
        previous = str(plan.blocker)
        skipped = [slot_token(plan.entry.task, s) for s in plan.slots]
        key = self.keys.log(previous)
        with into_run_log(self.redis, key, maxlen=self.settings.log_max_events):
            log.warning("cron.skipped", entry=plan.entry.name, skipped=skipped,
                        reason=plan.reason, previous=previous)  # fmt: skip
