"""How runs look to an operator: tables for people, one JSON object per line for scripts."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from runner.record import RunRecord, RunState

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `15m`, `2h`, `7d` or `1w`; raises click.BadParameter otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]


def ago(ts: float | None) -> str:
    """`42s ago`, `3m ago`, `5h ago`, `2d ago`; '-' when never."""
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def counters_text(counters: dict[str, int] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (counters or {}).items()) or "-"


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The fields `runs --json` promises: token, task, state, attempts, and a few more."""
    return {
        "token": run.token,
        "task": run.task,
        "state": run.state,
        "attempts": run.attempt,
        "job_id": run.job_id,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
    }


def run_detail(run: RunRecord, steps: dict[str, Any]) -> dict[str, Any]:
    """`show --json`: the summary plus counters, cursor, steps, error, result and times."""
    return {
        **run_summary(run),
        "args": run.args,
        "queue": run.queue,
        "generation": run.generation,
        "max_attempts": run.max_attempts,
        "worker": run.worker,
        "code_version": run.code_version,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "retry_at": iso(run.retry_at),
        "counters": run.counters,
        "total": run.total,
        "cursor": run.cursor,
        "steps": steps,
        "error": run.error,
        "result": run.result,
    }


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
             for r in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


def runs_table(runs: Sequence[RunRecord]) -> str:
    rows = [
        (r.token, r.task, r.state, str(r.attempt), counters_text(r.counters), ago(r.created_at))
        for r in runs
    ]
    return table(rows, ("TOKEN", "TASK", "STATE", "ATTEMPTS", "COUNTERS", "CREATED"))


def detail_text(run: RunRecord, steps: dict[str, Any]) -> str:
    """`show` for people: one field a line, then the steps and the error."""
    lines = [
        f"token:      {run.token}",
        f"task:       {run.task}  args={json.dumps(run.args)}",
        f"state:      {run.state}",
        f"attempts:   {run.attempt} of {run.attempt_base + run.max_attempts}"
        + (f"  (generation {run.generation})" if run.generation else ""),
        f"job id:     {run.job_id}",
        f"worker:     {run.worker or '-'}  code {run.code_version or '-'}",
        f"created:    {iso(run.created_at)}  ({ago(run.created_at)})",
        f"updated:    {iso(run.updated_at)}  ({ago(run.updated_at)})",
        f"counters:   {counters_text(run.counters)}" + (f"  of {run.total}" if run.total else ""),
        f"cursor:     {json.dumps(run.cursor)}",
    ]
    if run.retry_at and run.state == RunState.RETRYING:
        lines.append(f"retry at:   {iso(run.retry_at)}")
    lines.append("steps:" + ("" if steps else "      none finished"))
    for name, step in steps.items():
        lines.append(f"  - {name}: attempt {step.get('attempt')}, {step.get('seconds', 0):.3f}s")
    if run.error:
        err = run.error
        where = f" in step {err['step']}" if err.get("step") else ""
        lines.append(f"error:      {err.get('type')}{where} (attempt {err.get('attempt')}): "
                     f"{err.get('message')}")  # fmt: skip
    if run.result is not None and run.state == RunState.SUCCEEDED:
        lines.append(f"result:     {json.dumps(run.result)[:500]}")
    return "\n".join(lines)


def event_line(event: dict[str, Any]) -> str:
    """One log event for people: time, attempt, step, event, then the other fields."""
    skip = {"timestamp", "event", "level", "token", "task", "attempt", "step", "job_id", "logger"}
    rest = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                    for k, v in event.items() if k not in skip)  # fmt: skip
    step = f" [{event['step']}]" if event.get("step") else ""
    stamp = str(event.get("timestamp", ""))[:23]
    return f"{stamp} #{event.get('attempt', '-')}{step} {event.get('event')} {rest}".rstrip()
