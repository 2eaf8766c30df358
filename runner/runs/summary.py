"""A run in a few words for people: how long it took, its error's first line, its source or
arguments (the CLI's tables and the console's pages say the same)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from runner.record import RunRecord, RunState
from runner.runs.attempts import Attempt


def took(run: RunRecord, attempts: Sequence[Attempt] = ()) -> float | None:
    """Seconds the whole run took (its first attempt's start to its end), or has taken so far
    while it runs; without its attempts, from the latest attempt's start."""
    first = next((a.started for a in attempts if a.started), None)
    began = min(first, run.started_at or first) if first else run.started_at
    if not began:
        return None
    if run.state == RunState.RUNNING:
        return max(0.0, time.time() - began)
    if run.finished_at and run.finished_at >= began:
        return run.finished_at - began
    return None


def error_text(run: RunRecord) -> str:
    """The error's type and the first line of its message; '' when the run has none."""
    if not run.error or run.state == RunState.SUCCEEDED:
        return ""
    message = str(run.error.get("message") or "").strip().splitlines()
    return f"{run.error.get('type')}: {message[0] if message else ''}"


def argument_text(run: RunRecord) -> str:
    """The run's source (an import's file or URL) or else its arguments as k=v."""
    if isinstance(run.args.get("source"), str):
        return str(run.args["source"])
    return " ".join(f"{k}={json.dumps(v)}" for k, v in run.args.items())
