"""The console's state changes, each a POST (the guard checks its Origin and read-only mode):
rerun one run, cancel one, and bulk rerun of exactly the failed runs a preview showed."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from structlog.contextvars import bound_contextvars

from runner.cancel import cancel
from runner.record import RunState
from runner.rerun import rerun
from runner.web.console import ConsoleDep
from runner.web.listing import RunFilter, runs_page
from runner.web.pages import render, run_path

router = APIRouter()
BULK_MAX = 500  # runs one bulk rerun may name
ORIGIN = "web"  # every action's log event says where it came from


def run_url(token: str, **query: str) -> str:
    return run_path(token) + (f"?{urlencode(query)}" if query else "")


@router.post("/actions/rerun")
def rerun_one(
    console: ConsoleDep,
    token: Annotated[str, Form()],
    from_scratch: Annotated[str, Form()] = "",
) -> Response:
    """Rerun one failed run, from its checkpoint or (`from_scratch=1`) from the start."""
    with bound_contextvars(origin=ORIGIN):
        done = rerun(console.redis, console.settings, token, from_scratch=from_scratch == "1")
    notice = f"{done.action}: {done.reason}" if done.reason else done.action
    return RedirectResponse(run_url(token, notice=notice), status_code=303)


@router.post("/actions/cancel")
def cancel_one(console: ConsoleDep, token: Annotated[str, Form()]) -> Response:
    """Cancel a queued or running run (it stops at its next checkpoint)."""
    done = cancel(console.redis, console.settings, token, origin=ORIGIN)
    notice = f"{done.action}: {done.reason}" if done.reason else str(done.action)
    return RedirectResponse(run_url(token, notice=notice), status_code=303)


@router.get("/rerun")
def bulk_preview(request: Request, console: ConsoleDep) -> Response:
    """Which failed runs the current filter would rerun: at most BULK_MAX, listed, with a form
    naming exactly those (confirming reruns them, not the filter evaluated again)."""
    if console.readonly:
        return render(request, "missing.html", {"message": "the console is read-only"}, status=403)
    flt = RunFilter.from_query(request.query_params)
    page = runs_page(console.redis, console.settings, _failed(flt))
    context = {"flt": flt, "runs": page.runs, "more": bool(page.next_before), "max": BULK_MAX}
    return render(request, "bulk.html", context)


@router.post("/rerun")
async def bulk_rerun(request: Request, console: ConsoleDep) -> Response:
    """Rerun the runs named by the confirmed preview (`token` fields), each only if still
    failed; says what happened to each."""
    form = await request.form()
    tokens = [str(t) for t in form.getlist("token")][:BULK_MAX]
    scratch = form.get("from_scratch") == "1"
    results = []
    with bound_contextvars(origin=ORIGIN):
        for token in dict.fromkeys(tokens):
            results.append(rerun(console.redis, console.settings, token, from_scratch=scratch))
    return render(request, "bulk_done.html", {"results": results})


def _failed(flt: RunFilter) -> RunFilter:
    return replace(flt, state=RunState.FAILED, limit=BULK_MAX, before="")
