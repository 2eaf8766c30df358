"""/cron: each schedule entry in words, its next fire times, last slot handled and the state
of its last run, linked."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runner.cron.status import entry_status
from runner.cron.ticks import Cron
from runner.errors import RunnerError
from runner.web.console import ConsoleDep
from runner.web.pages import render

router = APIRouter()
NEXT_FIRES = 3


@router.get("/cron")
def cron_page(request: Request, console: ConsoleDep) -> Response:
    try:
        cron = Cron(console.redis, console.settings, registry=console.registry)
    except RunnerError as exc:
        return render(request, "cron.html", {"entries": [], "problem": str(exc)})
    marks = cron.marks()
    now = datetime.now(UTC)
    entries = []
    for entry in cron.entries:
        row = entry_status(cron, entry, now=now, marks=marks[entry.name])
        fires, at = [], now
        for _ in range(NEXT_FIRES):
            at = entry.next_slot(at)
            fires.append(at.timestamp())
        entries.append({**row, "fires": fires})
    return render(request, "cron.html", {"entries": entries, "problem": ""})
