"""Rendering pages: one Jinja2 environment (autoescape on) and the filters its templates use."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, Template, select_autoescape

from runner.record import RunState

STATE_WORDS = {str(s): str(s) for s in RunState}  # a state in colour and in words


def ago(ts: float | None, *, now: float | None = None) -> str:
    """`42s ago`, `3m ago`, `5h ago`, `2d ago`, or `in 3m` for the future; '-' when never."""
    if not ts:
        return "-"
    seconds = (now or time.time()) - ts
    later = seconds < 0
    seconds = abs(seconds)
    text = f"{int(seconds)}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    return f"in {text}" if later else f"{text} ago"


def when(ts: float | None) -> str:
    """An absolute UTC time, to the second: `2026-12-01 08:03:12Z`."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    """A duration for people: `0.42 s`, `12 s`, `3m 05s`, `2h 10m`."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)}m {int(value % 60):02d}s"
    return f"{int(value // 3600)}h {int(value % 3600 // 60):02d}m"


def run_path(token: str) -> str:
    """The path of a run's page: the token, percent-encoded where a URL path needs it."""
    return "/runs/" + quote(token, safe="/:@!$'()*+,;=-._~")


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def make_environment() -> Environment:
    """The console's templates, escaped by default (feeds and errors reach every page)."""
    env = Environment(
        loader=PackageLoader("runner.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, when=when, seconds=seconds, as_json=as_json, run_path=run_path)
    env.globals["state_words"] = STATE_WORDS
    return env


def render(
    request: Request, template: str | Template, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Render a page of the console: `template` is a file name, or a Template the site made
    with `site_template` (so it can extend `base.html`)."""
    env: Environment = request.app.state.templates
    page = env.get_template(template) if isinstance(template, str) else template
    body = page.render(
        request=request,
        readonly=request.app.state.console.readonly,
        signed_in=bool(getattr(request.state, "signed_in", False)),
        **context,
    )
    return HTMLResponse(body, status_code=status)


def site_template(request: Request, source: str) -> Template:
    """A template of the site's own pages, compiled once in the console's environment."""
    cache: dict[str, Template] = request.app.state.site_templates
    if source not in cache:
        env: Environment = request.app.state.templates
        cache[source] = env.from_string(source)
    return cache[source]
