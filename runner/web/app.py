"""The console's FastAPI app: one router per area, the site's own pages, the guard in front."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from redis import Redis

from runner.config import Settings
from runner.errors import ConfigError
from runner.logs import configure as configure_logs
from runner.redis import connect
from runner.tasks import TaskRegistry, load_registry
from runner.web import actions, cron, incident, live, monitoring, overview, runs, signin
from runner.web.console import Console
from runner.web.guard import Guard
from runner.web.pages import make_environment

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
) -> FastAPI:
    """The console for `settings`; the site's pages come from `registry.web_routers`.
    Raises ConfigError when the task module does not load."""
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
        sign_in_page=lambda path: login.render(next=path, wrong=False, readonly=True),
    )
    return app


def _router(entry: APIRouter | str) -> APIRouter:
    """A router of the site's, or the one a 'module:name' string names; raises ConfigError."""
    if isinstance(entry, APIRouter):
        return entry
    module, _, name = str(entry).partition(":")
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
