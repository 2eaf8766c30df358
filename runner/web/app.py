"""The console's FastAPI app: one router per area, the site's own pages, the guard in front."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from redis import Redis

from runner.config import Settings
from runner.connections.redis import connect
from runner.errors import BadRequest, ConfigError
from runner.keys import Keys
from runner.logs import configure as configure_logs
from runner.tasks import SitePages, TaskRegistry, load_registry
from runner.web import actions, cron, incident, live, monitoring, overview, runs, signin
from runner.web.clients import parse_trusted
from runner.web.console import Console
from runner.web.guard import Guard
from runner.web.hosts import HostList, check_bind
from runner.web.pages import make_environment
from runner.web.sessions import Sessions, check_token
from runner.web.throttle import SignInThrottle

STATIC = Path(__file__).parent / "static"

# The console's own areas, in the order their routes are matched. Add a router here.
ROUTERS: tuple[APIRouter, ...] = (
    monitoring.router,
    overview.router,
    runs.router,
    live.router,
    actions.router,
    cron.router,
    signin.router,
)


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    registry: TaskRegistry | None = None,
    routers: Sequence[APIRouter] = (),
    host: str = "127.0.0.1",
    port: int | None = None,
) -> FastAPI:
    """The console for `settings`, bound to `host` and `port` (None: any port, for tests);
    the site's pages come from `registry.web_routers`. Raises ConfigError when the task module
    does not load, the token is weak, or a bind beyond loopback lacks a token or host names."""
    check_token(settings.web_token)
    check_bind(settings, host)
    hosts = HostList.for_console(settings, port=port)
    trusted = parse_trusted(settings.web_trusted_proxy)
    if registry is None:
        registry = load_registry(settings.tasks_module)
    if redis is None:
        redis = connect(settings, check=False)
    if not structlog.is_configured():
        configure_logs(stream=sys.stderr)  # actions log into the runs' streams
    app = FastAPI(title="runner console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(settings, redis, registry)
    app.state.templates = make_environment()
    app.state.site_templates = {}
    sessions = Sessions(redis, settings) if settings.web_token else None
    app.state.sessions = sessions
    app.state.live_slots = live.StreamSlots()
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(RequestValidationError, _bad_request)
    site = [_router(r) for r in registry.web_routers]
    app.state.site_pages = _site_links(site)
    for router in (*ROUTERS, *routers, *site):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    incident.install(app)
    login = app.state.templates.get_template("login.html")
    app.add_middleware(
        Guard,
        settings=settings,
        hosts=hosts,
        sessions=sessions,
        trusted=trusted,
        throttle=SignInThrottle(redis, Keys(settings.prefix)),
        sign_in_page=lambda path: login.render(next=path, wrong=False, readonly=True),
    )
    return app


async def _bad_request(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestValidationError):
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()})
        exc = BadRequest(f"missing or malformed: {', '.join(fields) or 'the request'}")
    return PlainTextResponse(f"bad request: {exc}\n", status_code=400)


def _router(entry: SitePages | str) -> APIRouter:
    """A router of the site's, or the one a 'module:name' string names; raises ConfigError."""
    found: object = entry
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        try:
            found = getattr(importlib.import_module(module), name or "router")
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load the console pages {entry!r}: {exc}") from None
    if not isinstance(found, APIRouter):
        raise ConfigError(f"{entry!r} is not a fastapi.APIRouter")
    return found


def _site_links(routers: Sequence[APIRouter]) -> list[tuple[str, str]]:
    """The site's pages in the navigation: (title, path) from each router's first tag and
    first GET route."""
    links = []
    for router in routers:
        paths = [
            str(getattr(r, "path", "")) for r in router.routes
            if "GET" in getattr(r, "methods", set())
        ]  # fmt: skip
        if paths and router.tags:
            links.append((str(router.tags[0]), paths[0]))
    return links
