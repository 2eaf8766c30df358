"""/runs (filters, counts per state, pages) and /runs/{token} (one run and its log)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runner.errors import UnknownRun
from runner.logs import newest_events
from runner.monitoring.why import why
from runner.printable import printable_data
from runner.record import ACTIVE, RunState
from runner.runs.attempts import attempts
from runner.runs.limits import limit_text
from runner.runs.rqjobs import known_queues
from runner.runs.summary import argument_text, error_text, took
from runner.web.console import ConsoleDep
from runner.web.incident import DOWN
from runner.web.listing import PAGE_SIZES, RANGES, STATES, RunFilter, runs_page
from runner.web.pages import render
from runner.web.params import whole_number
from runner.web.runview import EVENTS_SHOWN, LEVELS, event_row, run_summary, shown

router = APIRouter()


@router.get("/runs")
def runs_list(request: Request, console: ConsoleDep) -> Response:
    flt = RunFilter.from_query(request.query_params)
    page = runs_page(console.redis, console.settings, flt, history=console.history)
    context = {
        "flt": flt,
        "page": page,
        "states": STATES,
        "ranges": RANGES,
        "page_sizes": PAGE_SIZES,
        "tasks": [t.name for t in console.registry],
        "queues": known_queues(console.redis, console.settings, tasks=console.registry),
        # the columns `runner runs` has: an import's source, the error's first line, duration
        "argument": {r.token: argument_text(r) for r in page.runs},
        "error": {r.token: error_text(r) for r in page.runs},
        "took": {r.token: took(r) for r in page.runs},
    }
    return render(request, "runs.html", context)


@router.get("/runs/{token:path}")
def run_page(request: Request, console: ConsoleDep, token: str) -> Response:
    """One run; `?level=warning&attempt=2` filters its log (and the live events)."""
    try:
        live = bool(console.redis.exists(console.keys.run(token)))
    except DOWN:  # Redis is down: a run that moved to history is still shown
        live = False
    moved = None if live else console.history.get(token)
    if moved is not None:  # a run that moved to history: read there
        record, steps = moved, console.history.steps(token)
        events = console.history.events(token)[-EVENTS_SHOWN:]
    else:
        try:
            token = console.runs.resolve(token)
        except UnknownRun as exc:
            return render(request, "missing.html", {"message": str(exc)}, status=404)
        found = console.runs.get(token)
        if found is None:
            message = {"message": f"run {token} expired"}
            return render(request, "missing.html", message, status=404)
        record, steps = found, console.runs.steps(token)
        events = newest_events(console.redis, console.keys, token, count=EVENTS_SHOWN)
    level = request.query_params.get("level", "")
    level = level if level in LEVELS else ""
    attempt = whole_number(request.query_params.get("attempt"), "attempt")
    rows = [event_row(i, e) for i, e in events if shown(e, level=level, attempt=attempt)]
    context = {
        "run": record,
        "steps": steps,
        "attempts": attempts(record, [e for _, e in events]),
        "rows": rows,
        "last_id": events[-1][0] if events else "0-0",
        "level": level,
        "attempt": attempt,
        "levels": LEVELS,
        "summary": json.dumps(printable_data(_without_error(run_summary(record)))),
        "args_json": json.dumps(record.args, indent=2, sort_keys=True, default=str),
        "limit": limit_text(record) if record.limit_key else "",
        "done": sum((record.counters or {}).values()),
        "why": why(
            None if moved else console.redis, console.settings, record, moved=moved is not None
        ).sentence,
        "can_rerun": record.state in (RunState.FAILED, RunState.CANCELLED),
        "can_cancel": record.state in ACTIVE and not record.cancel_requested,
    }
    return render(request, "run.html", context)


def _without_error(summary: dict[str, Any]) -> dict[str, Any]:
    """The page's first summary: its error box shows the error, once per page."""
    return {k: v for k, v in summary.items() if k != "error"}
