"""`GET /health` (the four answers as JSON, their details only to a request the guard let see
them; 503 only when "up" fails, so a load balancer does
not restart the console during an incident it should show) and `GET /metrics` (Prometheus
text, computed from Redis at scrape time). Added to the console's app by its ROUTERS."""

from __future__ import annotations

from typing import Any, Protocol, cast

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from redis import Redis

from runner.config import Settings
from runner.monitoring.health import check_health
from runner.monitoring.metrics import CONTENT_TYPE, render
from runner.tasks import TaskRegistry

router = APIRouter()


class _Console(Protocol):
    """What these routes read from `app.state.console` (runner.web.console.Console)."""

    settings: Settings
    redis: Redis
    registry: TaskRegistry


def _console(request: Request) -> _Console:
    return cast(_Console, request.app.state.console)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    console = _console(request)
    registry = console.registry
    report = await run_in_threadpool(
        check_health, console.redis, console.settings, site_checks=registry.health_checks,
        scheduled=bool(registry.schedule),
    )  # fmt: skip
    visitor = getattr(request.state, "visitor", None)
    if getattr(visitor, "health_details", False):
        body: dict[str, Any] = report.as_dict()
    else:  # a probe of any name, or without the token: status and verdict words only
        body = {"ok": report.ok, **{a.question: str(a.verdict) for a in report.answers}}
    return JSONResponse(body, status_code=200 if report.up.ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    console = _console(request)
    page = await run_in_threadpool(render, console.redis, console.settings)
    return Response(page, media_type=CONTENT_TYPE)
