"""The console's app: the site's own pages, from the registry's `web_routers` (a router, or
'module:name' of one, so workers and the CLI never import the web stack)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from redis import Redis

from runner.config import Settings
from runner.errors import ConfigError
from runner.tasks import TaskRegistry
from runner.web import create_app

pages = APIRouter(tags=["Shelf"])


@pages.get("/shelf")
def shelf() -> PlainTextResponse:
    return PlainTextResponse("books")


def test_site_pages_come_as_a_router_or_by_name_and_are_linked(
    redis: Redis, settings: Settings
) -> None:
    # Given a registry naming the site's pages once by object and once as 'module:name'
    for entry in (pages, f"{__name__}:pages"):
        registry = TaskRegistry()
        registry.web_routers.append(entry)
        # When the console is built
        app = create_app(settings, redis=redis, registry=registry)
        # Then the page is served and linked under its first tag
        assert app.state.site_pages == [("Shelf", "/shelf")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no.such.module:router", "cannot load the console pages 'no.such.module:router'"),
        (f"{__name__}:shelf", "is not a fastapi.APIRouter"),
        (SimpleNamespace(routes=[], tags=["Fake"]), "is not a fastapi.APIRouter"),
    ],
)
def test_anything_else_named_as_pages_is_refused_at_start(
    redis: Redis, settings: Settings, entry: object, message: str
) -> None:
    registry = TaskRegistry()
    registry.web_routers.append(entry)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app(settings, redis=redis, registry=registry)
