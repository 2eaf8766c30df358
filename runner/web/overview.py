"""/ : the four questions (up, slow, failing, deploy), charts of the last 24 hours, queues,
workers and what each is running, and the clock's last tick."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from rq import Queue, Worker

from runner.health import check_health
from runner.record import RunState, texts
from runner.schedule import parse_slot
from runner.web.charts import Chart, lines, stacked_bars
from runner.web.console import Console, ConsoleDep
from runner.web.figures import Figures, day_figures
from runner.web.listing import recent_failures
from runner.web.pages import render

router = APIRouter()
FAILING_WITHIN = 24 * 3600


@dataclass(frozen=True, slots=True)
class Answer:
    """One of the four questions: its verdict ('ok', 'warn', 'FAIL', '-') and figures."""

    question: str
    verdict: str
    detail: str


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    state: str
    queues: str
    token: str
    heartbeat: float | None


@router.get("/")
def overview(request: Request, console: ConsoleDep) -> Response:
    figures = day_figures(console, now=time.time())
    failures = recent_failures(console.redis, console.keys, within=FAILING_WITHIN)
    context: dict[str, Any] = {
        "answers": answers(console, figures, failures),
        "failures": failures,
        "charts": charts(figures),
        "queues": {q: Queue(q, connection=console.redis).count for q in _queues(console)},
        "workers": workers(console),
        "last_tick": last_tick(console),
    }
    return render(request, "overview.html", context)


def answers(console: Console, figures: Figures, failures: list[Any]) -> list[Answer]:
    """The four questions: up as `runner health` answers it (runner.health); failing from
    the runs of the last 24 hours; slow and deploy from the same figures."""
    registry = console.registry
    up = check_health(
        console.redis, console.settings, site_checks=registry.health_checks,
        scheduled=bool(registry.schedule),
    ).up  # fmt: skip
    found = [Answer("up", str(up.verdict), up.text)]
    found.append(Answer("slow", "ok" if figures.finished else "-", figures.slow_text()))
    failed, finished = figures.failed_total, figures.finished
    detail = f"{failed} of {finished} finished runs failed in 24 h"
    if failures:
        detail += f"; newest: {failures[0].task}"
    found.append(Answer("failing", "FAIL" if failures else "ok", detail))
    found.append(Answer("deploy", "-", figures.deploy_text()))
    return found


def charts(figures: Figures) -> list[Chart]:
    marks = figures.marks
    return [
        stacked_bars(
            "Runs finished per 10 minutes", start=figures.start, step=figures.step,
            series={RunState.SUCCEEDED: figures.succeeded, RunState.FAILED: figures.failed},
            marks=marks,
        ),
        lines(
            "p95 duration per task", start=figures.start, step=figures.step,
            series=figures.duration_p95, marks=marks,
        ),
        lines(
            "p95 queue wait per task", start=figures.start, step=figures.step,
            series=figures.wait_p95, marks=marks,
        ),
    ]  # fmt: skip


def workers(console: Console) -> list[WorkerRow]:
    """RQ's registered workers, each with the run its current job belongs to."""
    found = Worker.all(connection=console.redis)
    rows = []
    for worker in sorted(found, key=lambda w: w.name):
        job_id = worker.get_current_job_id()
        token = console.redis.get(console.keys.job(job_id)) if job_id else None
        beat = worker.last_heartbeat.timestamp() if worker.last_heartbeat else None
        rows.append(
            WorkerRow(
                name=worker.name, state=str(worker.get_state()),
                queues=", ".join(worker.queue_names()),
                token=texts([token])[0] if token else "", heartbeat=beat,
            )
        )  # fmt: skip
    return rows


def last_tick(console: Console) -> float | None:
    """When the clock last handled a slot: the newest of the cron entries' marks."""
    keys = [console.keys.cron_last(e.name) for e in console.registry.schedule]
    if not keys:
        return None
    raw: list[bytes | None] = console.redis.mget(keys)  # type: ignore[assignment]
    marks = [parse_slot(v.decode()) for v in raw if v]
    return max(m.timestamp() for m in marks) if marks else None


def _queues(console: Console) -> list[str]:
    return sorted({*console.settings.queues, *(t.queue for t in console.registry)})
