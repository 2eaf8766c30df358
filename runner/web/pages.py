"""Rendering pages: one Jinja2 environment (autoescape on) and the filters its templates use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, Template, select_autoescape
from markupsafe import Markup

from runner.monitoring.durations import ago, duration
from runner.printable import printable
from runner.record import RunState

STATE_WORDS = {str(s): str(s) for s in RunState}  # a state in colour and in words
# What `?notice=` may show: a code of this console's, never text from the URL.
NOTICES = {
    "requeued": "Rerun: requeued from its last checkpoint.",
    "requeued-from-scratch": "Rerun: requeued from scratch.",
    "not-rerun": "Not rerun: only a failed or cancelled run is rerun (see its state).",
    "run-cancelled": "Cancelled: it will not start.",
    "stopping": "Cancel requested: it stops at its next checkpoint or step boundary.",
    "not-cancelled": "Not cancelled: it had ended already.",
}


def when(ts: float | None) -> str:
    """An absolute UTC time, to the second: `2026-12-01 08:03:12Z`."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run_path(token: str) -> str:
    """The path of a run's page: the token as one percent-encoded path segment (`/`, `?`, `#`,
    `%` encoded too), so `a/../b?c` stays one token."""
    return "/runs/" + quote(token, safe=":@!$'()*+,;=-._~")


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def visible(value: Any) -> Any:
    """Every expression a template prints: hidden and reordering characters made visible
    (already-escaped Markup stays Markup)."""
    if isinstance(value, Markup):
        return Markup(printable(str(value)))
    return printable(value) if isinstance(value, str) else value


def make_environment() -> Environment:
    """The console's templates, escaped by default (feeds and errors reach every page)."""
    env = Environment(
        loader=PackageLoader("runner.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible,
    )
    env.filters.update(
        ago=ago,
        when=when,
        seconds=partial(duration, spaced=True),
        as_json=as_json,
        run_path=run_path,
    )
    env.globals["state_words"] = STATE_WORDS
    env.globals["notices"] = NOTICES
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
        signed_in=getattr(getattr(request.state, "visitor", None), "session", None) is not None,
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
