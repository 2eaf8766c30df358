"""What an operator is shown of a schedule entry: the expression in words, the next slot, the
last slot handled and the state of its last run (`runner cron list` and the console's /cron)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runner.cron.schedule import CronEntry, slot_text
from runner.cron.ticks import Cron
from runner.tokens import slot_token

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def describe(expression: str) -> str:
    """The expression in words for the common forms ('every minute', 'every 5 minutes',
    'hourly at :07', 'daily at 06:30 UTC', 'weekly on Monday at 06:30 UTC'), else as written."""
    minute, hour, day, month, weekday = expression.split()
    at = f"{hour.zfill(2)}:{minute.zfill(2)} UTC"
    if day != "*" or month != "*":
        return expression
    if weekday == "*" and hour == "*":
        if minute == "*":
            return "every minute"
        if minute.isdigit():
            return f"hourly at :{minute.zfill(2)}"
        if minute.startswith("*/") and minute[2:].isdigit():
            return "every minute" if minute == "*/1" else f"every {int(minute[2:])} minutes"
    if minute.isdigit() and hour.isdigit():
        if weekday == "*":
            return f"daily at {at}"
        if weekday.isdigit() and int(weekday) <= 7:
            return f"weekly on {DAYS[int(weekday) % 7]} at {at}"
    return expression


def entry_status(
    cron: Cron, entry: CronEntry, *, now: datetime, marks: tuple[datetime | None, ...]
) -> dict[str, Any]:
    """What `cron list` shows of one entry; a last run that is gone has state 'expired'."""
    last, fired = marks
    token = slot_token(entry.task, fired) if fired else None
    record = cron.runs.get(token) if token else None
    return {
        "name": entry.name,
        "expression": entry.expression,
        "schedule": describe(entry.expression),
        "task": entry.task,
        "queue": entry.queue or cron.registry.get(entry.task).queue,
        "catch_up": entry.catch_up,
        "overlap": entry.overlap,
        "next": slot_text(entry.next_slot(now)),
        "last_slot": slot_text(last) if last else None,
        "last_run": token,
        "last_state": record.state if record else ("expired" if token else None),
    }
