"""The console while Redis is down: every page that needs Redis answers with an incident page
(503: the up answer, what is unreachable, what still works) instead of a bare 500. The guard
never reads Redis, so a token or a signed cookie is still checked."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runner.connections.redis import redact
from runner.errors import HistoryUnavailable
from runner.web.pages import render

DOWN = (RedisConnectionError, RedisTimeoutError)


def install(app: FastAPI) -> None:
    """Answer a route's failure to reach Redis with the incident page, and its failure to
    read the history database with a page that says so (503 both)."""
    for kind in DOWN:
        app.add_exception_handler(kind, incident)
    app.add_exception_handler(HistoryUnavailable, history_down)


async def history_down(request: Request, exc: Exception) -> Response:
    return render(request, "history_down.html", {"message": str(exc)}, status=503)


async def incident(request: Request, exc: Exception) -> Response:
    settings = request.app.state.console.settings
    up = f"redis unreachable: {exc}"
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:  # a script's request
        return JSONResponse({"error": up}, status_code=503)
    where = redact(settings.redis_url or "the embedded Redis under RUNNER_HOME")
    context = {"up": up, "where": where, "path": request.url.path}
    return render(request, "incident.html", context, status=503)
