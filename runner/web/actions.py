"""The console's state changes, each a POST (the guard checks its Origin and read-only mode):
rerun one run, cancel one (both asking first when they cannot be undone), and bulk rerun of
exactly the runs a preview showed, each only while still as the preview saw it."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from structlog.contextvars import bound_contextvars

from runner.errors import BadRequest
from runner.record import RunState
from runner.runs.cancel import CancelAction, cancel
from runner.runs.rerun import RerunAction, rerun
from runner.web.console import Console, ConsoleDep
from runner.web.guard import Visitor
from runner.web.listing import RunFilter, runs_page
from runner.web.pages import render, run_path
from runner.web.previews import Previews

router = APIRouter()
BULK_MAX = 500  # runs one bulk rerun may name
COUNT_PAGES = 20  # a preview counts the runs that match up to this many pages of BULK_MAX
ORIGIN = "web"  # every action's log event says where it came from
CANCEL_NOTICES = {
    CancelAction.CANCELLED: "run-cancelled",
    CancelAction.STOPPING: "stopping",
    CancelAction.SKIPPED: "not-cancelled",
}


def run_url(token: str, **query: str) -> str:
    return run_path(token) + (f"?{urlencode(query)}" if query else "")


def _handle(request: Request) -> str:
    visitor = cast(Visitor | None, getattr(request.state, "visitor", None))
    return visitor.handle if visitor else "-"


@router.post("/actions/rerun")
def rerun_one(
    request: Request,
    console: ConsoleDep,
    token: Annotated[str, Form(max_length=1000)],
    from_scratch: Annotated[str, Form(max_length=1)] = "",
    confirm: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    """Rerun one failed run, from its checkpoint or (`from_scratch=1`, once confirmed: its
    finished steps are forgotten) from the start."""
    scratch = from_scratch == "1"
    if scratch and confirm != "1":
        return _confirm(request, token, "rerun-from-scratch")
    with bound_contextvars(origin=ORIGIN, session=_handle(request)):
        done = rerun(console.redis, console.settings, token, from_scratch=scratch)
    notice = "not-rerun"
    if done.action == RerunAction.REQUEUED:
        notice = "requeued-from-scratch" if scratch else "requeued"
    return RedirectResponse(run_url(token, notice=notice), status_code=303)


@router.post("/actions/cancel")
def cancel_one(
    request: Request,
    console: ConsoleDep,
    token: Annotated[str, Form(max_length=1000)],
    confirm: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    """Cancel a queued or running run (it stops at its next checkpoint), once confirmed."""
    if confirm != "1":
        return _confirm(request, token, "cancel")
    with bound_contextvars(session=_handle(request)):
        done = cancel(console.redis, console.settings, token, origin=ORIGIN)
    return RedirectResponse(run_url(token, notice=CANCEL_NOTICES[done.action]), status_code=303)


def _confirm(request: Request, token: str, what: str) -> Response:
    return render(request, "confirm.html", {"token": token, "what": what})


@router.get("/rerun")
def bulk_preview(request: Request, console: ConsoleDep) -> Response:
    """Which failed runs the current filter would rerun: at most BULK_MAX, listed, with a form
    carrying the one-time id of exactly those (confirming reruns them, not the filter again)."""
    if console.readonly:
        return render(request, "missing.html", {"message": "the console is read-only"}, status=403)
    flt = RunFilter.from_query(request.query_params)
    page = runs_page(console.redis, console.settings, _failed(flt))
    matched = len(page.runs)
    if page.next_before:
        matched += _count_more(console, flt, page.next_before)
    preview = Previews(console.redis, console.keys).create(page.runs)
    context = {
        "flt": flt, "runs": page.runs, "matched": matched, "max": BULK_MAX, "preview": preview,
        "capped": matched >= BULK_MAX * COUNT_PAGES,
    }  # fmt: skip
    return render(request, "bulk.html", context)


@router.post("/rerun")
async def bulk_rerun(request: Request, console: ConsoleDep) -> Response:
    """Rerun the runs the confirmed preview named, each only if still in the state and attempt
    the preview saw; a replay, or a run the preview did not list, reruns nothing."""
    form = await request.form()
    preview = str(form.get("preview", ""))[:100]
    tokens = list(dict.fromkeys(str(t) for t in form.getlist("token")))
    if len(tokens) > BULK_MAX:
        raise BadRequest(f"a bulk rerun names at most {BULK_MAX} runs")
    previews = Previews(console.redis, console.keys)
    listed = previews.listed(preview) if preview else {}
    outside = [t for t in tokens if t not in listed]
    if listed and outside:
        raise BadRequest(f"run {outside[0]!r} was not in this preview; nothing was rerun")
    if not listed or not previews.claim(preview):
        message = "this preview was confirmed already or has expired: nothing was rerun"
        return render(request, "missing.html", {"message": message}, status=409)
    scratch = form.get("from_scratch") == "1"
    with bound_contextvars(origin=ORIGIN, session=_handle(request)):
        results = [
            rerun(console.redis, console.settings, t, from_scratch=scratch, seen=listed[t])
            for t in tokens
        ]
    previews.keep(preview, results)
    return RedirectResponse(f"/rerun/done/{preview}", status_code=303)


@router.get("/rerun/done/{preview}")
def bulk_done(request: Request, console: ConsoleDep, preview: str) -> Response:
    """What confirming a preview did (a page to reload, not a POST to resend)."""
    results = Previews(console.redis, console.keys).outcome(preview[:100])
    if results is None:
        message = "no bulk rerun under this id (they are kept for an hour)"
        return render(request, "missing.html", {"message": message}, status=404)
    requeued = sum(r.action == RerunAction.REQUEUED for r in results)
    return render(request, "bulk_done.html", {"results": results, "requeued": requeued})


def _failed(flt: RunFilter) -> RunFilter:
    return replace(flt, state=RunState.FAILED, limit=BULK_MAX, before="")


def _count_more(console: Console, flt: RunFilter, before: str) -> int:
    """How many more failed runs match after the first page (up to COUNT_PAGES pages)."""
    counted = 0
    for _ in range(COUNT_PAGES - 1):
        page = runs_page(console.redis, console.settings, replace(_failed(flt), before=before))
        counted += len(page.runs)
        if not page.next_before:
            break
        before = page.next_before
    return counted
