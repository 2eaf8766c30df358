"""How runs look to an operator: tables for people, one JSON object per line for scripts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any

from runner.monitoring.durations import ago, duration
from runner.monitoring.durations import iso_time as iso
from runner.record import RunRecord, RunState
from runner.runs.attempts import Attempt
from runner.runs.limits import limit_text
from runner.runs.summary import argument_text, error_text, took


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
        "args": run.args,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "error": run.error,
    }


def run_detail(
    run: RunRecord, steps: dict[str, Any], attempts: Sequence[Attempt] = ()
) -> dict[str, Any]:
    """`show --json`: the summary plus counters, cursor, steps, attempts, error, result and
    times (every time ISO 8601 UTC)."""
    return {
        **run_summary(run),
        "queue": run.queue,
        "generation": run.generation,
        "max_attempts": run.max_attempts,
        "worker": run.worker,
        "code_version": run.code_version,
        "retry_at": iso(run.retry_at),
        "due_at": iso(run.due_at),
        "counters": run.counters,
        "total": run.total,
        "cursor": run.cursor,
        "steps": {name: _step_json(step) for name, step in steps.items()},
        "attempt_list": [_attempt_json(a) for a in attempts],
        "took": took(run, attempts),
        "result": run.result,
        "handovers": run.handovers,
        "cancel_requested": run.cancel_requested or None,
        "limit": limit_text(run) if run.limit_key else None,
        "trace_id": run.trace_id or None,
    }


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.number, "worker": a.worker, "code_version": a.code_version,
        "outcome": a.outcome, "started_at": iso(a.started), "ended_at": iso(a.ended),
        "seconds": a.seconds,
    }  # fmt: skip


def _step_json(step: Any) -> Any:
    if isinstance(step, dict) and isinstance(step.get("finished_at"), int | float):
        return {**step, "finished_at": iso(step["finished_at"])}
    return step


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
             for r in [headers, *rows]]  # fmt: skip
    return "\n".join(lines)


RUNS_HEADERS = ("TOKEN", "TASK", "STATE", "TRIES", "DURATION", "ARGUMENT", "ERROR", "CREATED")
# The columns cut when the table is wider than the terminal, in this order, to their least widths.
# A token cut short is still a prefix, which every command takes for RUN.
ARGUMENT = 5
SHRINK = ((0, 16), (ARGUMENT, 10), (1, 10), (6, 12))


def runs_table(runs: Sequence[RunRecord], *, width: int | None = None) -> str:
    """`runs` for people: cut to the terminal's width (error, argument, token first)."""
    rows = [
        [r.token, r.task, r.state, str(r.attempt), duration(took(r)), argument_text(r),
         error_text(r) or "-", ago(r.created_at)]
        for r in runs
    ]  # fmt: skip
    # COLUMNS, else the terminal's width; piped into a file or a program: nothing is cut
    width = width or shutil.get_terminal_size(fallback=(0, 0)).columns
    if not width:
        return table(rows, RUNS_HEADERS)
    widths = [max(len(c) for c in col) for col in zip(RUNS_HEADERS, *rows, strict=False)]
    for column, least in SHRINK:
        over = sum(widths) + 2 * (len(widths) - 1) - width
        if over > 0:
            widths[column] = max(least, widths[column] - over)
    for row in rows:
        for column, _ in SHRINK:
            path = column == ARGUMENT and "/" in row[column]  # a path's end says most
            row[column] = cut(row[column], widths[column], keep_end=path)
    return table(rows, RUNS_HEADERS)


def cut(text: str, width: int, *, keep_end: bool = False) -> str:
    """`text` in at most `width` characters, '…' marking what was cut (the start or the end)."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if keep_end else text[: width - 1] + "…"


def attempts_text(run: RunRecord) -> str:
    """The attempt number and what is left of this run's allowance (a rerun starts a new one;
    an attempt that handed the run over to another worker does not count)."""
    left = max(0, run.attempts_left)
    text = f"{run.attempt}, {left or 'none'} left"
    notes = []
    if run.rerun_attempt:
        notes.append(f"of {run.max_attempts} since the rerun at attempt {run.rerun_attempt}")
    if run.handovers:
        notes.append(f"{run.handovers} handed over, not counted")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def attempt_lines(attempts: Sequence[Attempt]) -> list[str]:
    """One line per attempt: number, worker, code version, outcome, duration."""
    lines = ["tries:" + ("" if attempts else "      none in the log")]
    for a in attempts:
        lines.append(f"  #{a.number} {a.worker or '-'}  code {a.code_version or '-'}  "
                     f"{a.outcome or '-'}  {duration(a.seconds)}")  # fmt: skip
    return lines


def detail_text(run: RunRecord, steps: dict[str, Any], attempts: Sequence[Attempt] = ()) -> str:
    """`show` for people: one field a line, then the attempts, the steps and the error."""
    whole = took(run, attempts)
    lines = [
        f"token:      {run.token}",
        f"task:       {run.task}  args={json.dumps(run.args)}",
        f"state:      {run.state}",
        f"attempts:   {attempts_text(run)}"
        + (f"  (generation {run.generation})" if run.generation else ""),
        f"job id:     {run.job_id}",
        f"worker:     {run.worker or '-'}  code {run.code_version or '-'}",
        f"created:    {iso(run.created_at)}  ({ago(run.created_at)})",
        f"updated:    {iso(run.updated_at)}  ({ago(run.updated_at)})",
        f"started:    {iso(run.started_at) or '-'}"
        + (" (latest attempt)" if run.attempt > 1 else ""),
        f"finished:   {iso(run.finished_at) or '-'}"
        + (f"  took {duration(whole)}" if whole is not None else ""),
        f"counters:   {counters_text(run.counters)}" + (f"  of {run.total}" if run.total else ""),
        f"cursor:     {json.dumps(run.cursor)}",
    ]
    if run.retry_at and run.state == RunState.RETRYING:
        lines.append(f"retry at:   {iso(run.retry_at)}")
    if run.due_at and run.state == RunState.SCHEDULED:
        lines.append(f"due at:     {iso(run.due_at)} (scheduled: the reaper queues it then)")
    if run.handovers:
        lines.append(f"handovers:  {run.handovers} (workers stopped and handed it on)")
    if run.limit_key:
        lines.append(f"limit:      {limit_text(run)}")
    if run.trace_id:
        lines.append(f"trace:      {run.trace_id} (its enqueuer's; docs/tracing.md)")
    if run.cancel_requested:
        asked = "" if run.state == RunState.CANCELLED else ", stops at its next checkpoint"
        lines.append(f"cancel:     asked by {run.cancel_requested}{asked}")
    lines += attempt_lines(attempts)
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
