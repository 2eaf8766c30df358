"""One run as the console shows it: attempts read from its log, events for people."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.record import RunRecord, RunState

LEVELS = ("debug", "info", "warning", "error")
EVENTS_SHOWN = 1_000  # the newest events of a run page (streams are capped at 2,000 anyway)
_CONTEXT = {"timestamp", "event", "level", "token", "task", "attempt", "step", "job_id", "logger"}
_APART = {"exception"}  # shown folded, under the event's fields
_ENDINGS = {
    "run.succeeded": RunState.SUCCEEDED,
    "run.failed": RunState.FAILED,
    "run.retrying": "failed, retried",
    "attempt.abandoned": "abandoned (lease lost)",
    "run.requeued": "lost (worker died), requeued",
    "run.cancelled": RunState.CANCELLED,
}


@dataclass
class Attempt:
    """One attempt of a run, as its log events tell it."""

    number: int
    worker: str = ""
    code_version: str = ""
    started: float | None = None
    ended: float | None = None
    outcome: str = ""


def stamp(event: dict[str, Any]) -> float | None:
    """An event's ISO timestamp as epoch seconds (None when it has none)."""
    raw = event.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def attempts(record: RunRecord, events: list[dict[str, Any]]) -> list[Attempt]:
    """Attempts in order: start from `run.state running`, end from the closing event; the
    current attempt's worker and code version also come from the run record."""
    found: dict[int, Attempt] = {}
    for event in events:
        number = event.get("attempt")
        if not isinstance(number, int):
            continue
        name = event.get("event")
        if name == "run.state" and event.get("state") == RunState.RUNNING:
            found[number] = Attempt(
                number, worker=str(event.get("worker", "")),
                code_version=str(event.get("code_version", "")), started=stamp(event),
            )  # fmt: skip
        elif name in _ENDINGS and number in found and not found[number].outcome:
            found[number].ended = stamp(event)
            found[number].outcome = _ENDINGS[str(name)]
    current = found.get(record.attempt)
    if current is not None:
        current.code_version = current.code_version or record.code_version
        if not current.outcome:
            current.outcome = record.state
    return [found[n] for n in sorted(found)]


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
