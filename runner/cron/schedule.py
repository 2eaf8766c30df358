"""Cron schedule entries: what fires when (a cron expression in UTC), and the slot helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from runner.errors import ConfigError, InvalidArguments
from runner.tasks import ScheduleEntry, TaskRegistry
from runner.tokens import canonical_json

MINUTE = timedelta(minutes=1)
OVERLAP = ("skip", "allow")
SLOT_FORMAT = "%Y-%m-%dT%H:%MZ"  # fixed width: the marks compare as strings in Lua


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One line of the schedule: run `task(**args)` at every minute `expression` matches, UTC.

    `queue` overrides the task's queue; `catch_up` is how many missed slots one tick fires at
    most (the newest, together); `overlap` is 'skip' (skip slots while the run fired before,
    or any running run of the task, is active) or 'allow'.
    """

    name: str
    expression: str
    _: KW_ONLY
    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    catch_up: int = 1
    overlap: str = "skip"

    def __post_init__(self) -> None:
        """Raises ValueError naming the entry when a field is invalid."""
        problem = _problem(self)
        if problem:
            raise ValueError(f"cron entry {self.name!r}: {problem}")

    def is_due(self, minute: datetime) -> bool:
        return bool(croniter.match(self.expression, minute))

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after `after`."""
        return to_utc(croniter(self.expression, after).get_next(datetime))

    def pending(self, *, after: datetime | None, until: datetime) -> list[datetime]:
        """The slots a tick at minute `until` handles, oldest first: the newest `catch_up` in
        (after, until]; for an entry that never fired (`after` None), `until` alone if due."""
        if after is None:
            return [until] if self.is_due(until) else []
        found: list[datetime] = []
        walk = croniter(self.expression, until + MINUTE)
        while len(found) < self.catch_up:
            slot = to_utc(walk.get_prev(datetime))
            if slot <= after:
                break
            found.append(slot)
        return found[::-1]


def _problem(entry: CronEntry) -> str | None:
    if len(entry.expression.split()) != 5 or not croniter.is_valid(entry.expression):
        return (
            f"{entry.expression!r} is not a cron expression; use five fields"
            " (minute hour day-of-month month day-of-week), e.g. '0 6 * * *'"
        )
    try:
        croniter(entry.expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except ValueError:
        return f"{entry.expression!r} never matches a date"
    if entry.catch_up < 1:
        return f"catch_up={entry.catch_up}; it must be at least 1 (1: the latest missed slot)"
    if entry.overlap not in OVERLAP:
        return f"overlap={entry.overlap!r}; use 'skip' or 'allow'"
    try:
        canonical_json(dict(entry.args))
    except InvalidArguments as exc:
        return str(exc)
    return None


def check_schedule(entries: Sequence[ScheduleEntry], registry: TaskRegistry) -> list[CronEntry]:
    """The entries, checked: CronEntry objects with unique names and tasks (a task's slot tokens
    must be its entry's alone); raises ConfigError, or UnknownTask for an unregistered task."""
    checked: list[CronEntry] = []
    for entry in entries:
        if not isinstance(entry, CronEntry):
            raise ConfigError(
                f"the cron schedule holds {entry!r}; use runner.cron.schedule.CronEntry"
            )
        registry.get(entry.task)
        checked.append(entry)
    for kind in ("name", "task"):
        values = [getattr(e, kind) for e in checked]
        if twice := sorted({v for v in values if values.count(v) > 1}):
            raise ConfigError(f"the cron schedule has several entries with {kind} {twice}")
    return checked


def to_utc(moment: datetime) -> datetime:
    """The moment in UTC; a naive datetime is taken to be UTC already."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.replace(fold=0)


def floor_minute(moment: datetime) -> datetime:
    """The minute (UTC) holding `moment`: a slot."""
    return to_utc(moment).replace(second=0, microsecond=0)


def slot_text(slot: datetime) -> str:
    return f"{to_utc(slot):{SLOT_FORMAT}}"


def parse_slot(text: str) -> datetime:
    """A slot written by `slot_text`; raises ValueError for anything else."""
    return datetime.strptime(text, SLOT_FORMAT).replace(tzinfo=UTC)
