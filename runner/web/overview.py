"""/ : the four questions of `runner health` (up, slow, failing, deploy) with their figures,
charts of the last 24 hours with deploy marks, queues, workers and what each is running, and
the clock's last tick."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from rq import Queue, Worker

from runner.monitoring.health import check_health
from runner.record import RunRecord, RunState, texts
from runner.runs.rqjobs import known_queues
from runner.web.charts import Chart, lines, stacked_bars
from runner.web.console import Console, ConsoleDep
from runner.web.figures import DayFigures, day_figures
from runner.web.listing import recent_failures
from runner.web.pages import render
from runner.worker.liveness import Liveness

router = APIRouter()
FAILING_WITHIN = 24 * 3600  # the failing line links the runs failed this recently


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A registered worker: alive by its heartbeat, and the run its current job is of."""

    name: str
    state: str
    queues: str
    alive: bool
    heartbeat: float | None
    tokens: tuple[str, ...]


@router.get("/")
def overview(request: Request, console: ConsoleDep) -> Response:
    now = time.time()
    registry = console.registry
    report = check_health(
        console.redis, console.settings, site_checks=registry.health_checks,
        scheduled=bool(registry.schedule), now=now,
    )  # fmt: skip
    failures: list[RunRecord] = recent_failures(
        console.redis, console.settings, within=FAILING_WITHIN
    )
    context: dict[str, Any] = {
        "answers": report.answers,
        "failures": failures,
        "charts": charts(day_figures(console, now=now)),
        "queues": _lengths(console),
        "backlog": {b.queue: b for b in report.backlog},
        "workers": workers(console, now=now),
        "last_tick": last_tick(console),
    }
    return render(request, "overview.html", context)


def charts(day: DayFigures) -> list[Chart]:
    marks = day.marks
    return [
        stacked_bars(
            "Runs ended per 10 minutes", start=day.start, step=day.step,
            series={RunState.SUCCEEDED: day.succeeded, RunState.FAILED: day.failed},
            marks=marks,
        ),
        lines(
            "p95 duration per task", start=day.start, step=day.step,
            series=day.duration_p95, marks=marks,
        ),
        lines(
            "p95 queue wait per task", start=day.start, step=day.step,
            series=day.wait_p95, marks=marks,
        ),
    ]  # fmt: skip


def workers(console: Console, *, now: float) -> list[WorkerRow]:
    """RQ's registered workers, alive or not by heartbeat, each with the run(s) its current
    job(s) belong to."""
    liveness = Liveness(console.redis, console.settings)
    beats = liveness.registered()
    pipe = console.redis.pipeline(transaction=False)
    for beat in beats:
        pipe.smembers(f"{Worker.redis_worker_namespace_prefix}{beat.name}:executions")
    executions = pipe.execute()
    job_ids = [[e.split(":")[0] for e in texts(list(found))] for found in executions]
    pipe = console.redis.pipeline(transaction=False)
    for ids in job_ids:
        for job_id in ids:
            pipe.get(console.keys.job(job_id))
    tokens = iter(pipe.execute())
    rows = []
    for beat, ids in zip(beats, job_ids, strict=True):
        found = tuple(texts([t for t in (next(tokens) for _ in ids) if t]))
        rows.append(
            WorkerRow(
                name=beat.name, state=beat.state, queues=", ".join(beat.queues),
                alive=liveness.is_alive(beat, now), heartbeat=beat.last_heartbeat,
                tokens=found,
            )
        )  # fmt: skip
    return rows


def last_tick(console: Console) -> float | None:
    """When the last cron tick (of any clock or crontab) ended."""
    raw = console.redis.get(console.keys.last_tick)
    return float(texts([raw])[0]) if raw else None


def _lengths(console: Console) -> dict[str, int]:
    """Jobs waiting, per known queue."""
    names = known_queues(console.redis, console.settings, tasks=console.registry)
    pipe = console.redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(Queue.redis_queue_namespace_prefix + name)
    return dict(zip(names, pipe.execute(), strict=True))
