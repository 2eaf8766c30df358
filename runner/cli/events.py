"""Log events for people: one line each, and which ones show their traceback."""

from __future__ import annotations

import json
from typing import Any


def event_line(event: dict[str, Any], *, traceback: bool = True) -> str:
    """One log event for people: time (UTC), attempt, step, event, then the other fields;
    an exception's traceback on the lines below unless `traceback` is false."""
    skip = {"timestamp", "event", "level", "token", "task", "attempt", "step", "job_id", "logger",
            "exception", "expected"}  # fmt: skip
    rest = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                    for k, v in event.items() if k not in skip)  # fmt: skip
    step = f" [{event['step']}]" if event.get("step") else ""
    raw = str(event.get("timestamp") or "")
    stamp = raw[:23].ljust(23, "0") + "Z" if raw else "-"
    line = f"{stamp} #{event.get('attempt', '-')}{step} {event.get('event')} {rest}".rstrip()
    if traceback and event.get("exception"):
        line += "\n" + "\n".join(f"    {t}" for t in str(event["exception"]).splitlines())
    return line


class Tracebacks:
    """Which events of a log `runner logs` shows with their traceback: an unexpected error's,
    the first time it appears; never a PermanentError's or a transient error's (retried)."""

    def __init__(self, *, every: bool = False) -> None:
        self.every = every
        self.seen: set[str] = set()

    def shows(self, event: dict[str, Any]) -> bool:
        text = event.get("exception")
        if not text or self.every:
            return bool(text)
        if event.get("expected") or text in self.seen:
            return False
        self.seen.add(str(text))
        return True
