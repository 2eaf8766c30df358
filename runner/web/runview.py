"""One run as the console shows it: events for people (attempts: runner.runs.attempts)."""

from __future__ import annotations

import json
from typing import Any

from runner.record import RunRecord, RunState

LEVELS = ("debug", "info", "warning", "error")
EVENTS_SHOWN = 1_000  # the newest events of a run page (streams are capped at 2,000 anyway)
_CONTEXT = {"timestamp", "event", "level", "token", "task", "attempt", "step", "job_id", "logger"}
_APART = {"exception"}  # shown folded, under the event's fields


def shown(event: dict[str, Any], *, level: str, attempt: int | None) -> bool:
    """Whether the level / attempt filter keeps this event (level: this one and above)."""
    if attempt is not None and event.get("attempt") != attempt:
        return False
    if level in LEVELS:
        rank = LEVELS.index(str(event.get("level", "info"))) if event.get("level") in LEVELS else 1
        return rank >= LEVELS.index(level)
    return True


def event_row(event_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """An event as a row of the log table (also the JSON of a live event): plain strings only,
    escaped by the template or set as text by the script."""
    fields = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}"
        for k, v in event.items()
        if k not in _CONTEXT and k not in _APART
    )
    return {
        "id": event_id,
        "time": str(event.get("timestamp", ""))[11:23],
        "attempt": str(event.get("attempt", "")),
        "level": str(event.get("level", "info")),
        "step": str(event.get("step", "") or ""),
        "event": str(event.get("event", "")),
        "fields": fields[:4000],
        "exception": str(event.get("exception", ""))[:8000],
    }


def run_summary(record: RunRecord) -> dict[str, Any]:
    """What the live script updates on the page: state, attempt, counters and progress."""
    counters = record.counters or {}
    done = sum(v for v in counters.values() if isinstance(v, int))
    return {
        "state": record.state,
        "attempt": record.attempt,
        "counters": counters,
        "done": done,
        "total": record.total,
        "error": (record.error or {}).get("message") if record.state == RunState.FAILED else None,
    }
