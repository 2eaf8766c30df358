"""A run's attempts as its log events tell them: who ran each, with which code, when, and how
it ended (`runner show` and the console's run page list them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.record import RunRecord, RunState

_ENDINGS = {
    "run.succeeded": RunState.SUCCEEDED,
    "run.failed": RunState.FAILED,
    "run.retrying": "failed, retried",
    "attempt.abandoned": "abandoned (lease lost)",
    "run.requeued": "lost (worker died), requeued",
    "run.cancelled": RunState.CANCELLED,
    "attempt.handed_over": "handed over (its worker stopped)",
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

    @property
    def seconds(self) -> float | None:
        """How long it ran; None while it runs or when its start or end is not in the log."""
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


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
