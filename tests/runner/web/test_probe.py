"""Every route of the console (enumerated from the app, the site's pages included), probed as
an attacker would: hostile Host, proxy headers, no token, malformed parameters and forms. Each
answer is one of 200/303/400/401/403/404/405/409/429 where it should be, never a 500, and
carries the security headers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from redis import Redis
from starlette.routing import Mount
from structlog.testing import capture_logs

from runner.config import Settings
from runner.web import create_app
from tests.runner.web.conftest import BASE

TOKEN = "s3cret-console-token-for-tests-0123456789ABCDEF"
SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}
HOSTILE_QUERIES = [
    "attempt=%C2%B2", "attempt=-1", "attempt=99999999999999999999", "before=nan:x",
    "before=inf:x", "before=%ff%fe", "limit=%C2%B2", "limit=1e999", "after=nan", "after=(((",
    "level=%00", "state=%3Cscript%3E", "since=9999d", "notice=%3Cb%3Ehi", "next=//evil.example",
    "token=" + "x" * 5000, "task=%00%01", "a=1&a=2&a=3", "search=%3Cscript%3E", "search=x",
    "search=" + "%25" * 300,
]  # fmt: skip
HOSTILE_FORMS: list[dict[str, Any]] = [
    {}, {"token": ""}, {"token": "\x00"}, {"token": ["a", "b"]}, {"preview": "x" * 500},
    {"token": "nope", "from_scratch": "yes", "confirm": "maybe"}, {"next": "\\\\evil"},
]  # fmt: skip


def paths(routes: list[Any], token: str, prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Every route's path with its parameters filled in, and its methods (routers included
    in routers walked: FastAPI keeps them as they were included)."""
    for route in routes:
        if isinstance(route, Mount):
            yield prefix + route.path + "/console.css", {"GET"}
        elif isinstance(route, APIRoute):
            path = re.sub(r"\{token(:path)?\}", token, prefix + route.path)
            yield re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "made-up", path), set(route.methods)
        elif hasattr(route, "original_router"):
            inner = prefix + route.include_context.prefix
            yield from paths(route.original_router.routes, token, inner)


def checked(answer: Any, allowed: set[int], what: str) -> None:
    assert answer.status_code in allowed, f"{what}: {answer.status_code} {answer.text[:200]}"
    assert answer.status_code != 500, what
    assert answer.headers.get("x-frame-options") == "DENY", what
    assert "default-src 'none'" in answer.headers.get("content-security-policy", ""), what


def test_every_route_under_attack_answers_as_it_should_and_never_500(
    client_for: Callable[..., TestClient], enqueue: Callable[..., Any],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    token = enqueue("broken", token="probe-run").token
    drain()  # failed: a live stream of it ends at once
    open_console = client_for()
    guarded = client_for(web_token=TOKEN)
    routes: dict[str, set[str]] = {}
    for path, methods in paths(open_console.app.routes, token):
        routes.setdefault(path, set()).update(methods)
    assert {"/health", "/metrics", "/runs", "/rerun", "/actions/rerun", "/login"} <= set(routes)
    ok = {200, 303, 400, 404, 405, 409, 503}  # 503: /health with no worker alive
    for path, methods in routes.items():
        for method in ("GET", "POST", "PUT", "DELETE"):
            allowed = ok if method in methods else {405, 404, 400}
            if method == "POST":
                allowed = allowed | {403}  # no Origin of its own: e.g. a form from elsewhere
            for query in ["", *HOSTILE_QUERIES]:
                url = f"{path}?{query}" if query else path
                send = _request(method, url)
                checked(send(open_console, SAME_SITE), allowed, f"{method} {url}")
            health = path == "/health"
            hostile = send(open_console, {**SAME_SITE, "host": "evil.example:8080"})
            checked(hostile, ({200, 503} if health else {400}) | allowed, f"Host {path}")
            if not health and path != "/static/console.css":
                assert hostile.status_code == 400 or method not in methods, path
            proxied = send(open_console, {**SAME_SITE, "x-forwarded-host": "a"})
            checked(proxied, ({200, 503} if health else {403}) | allowed, f"proxy {path}")
            if method == "POST":
                for form in HOSTILE_FORMS:
                    answer = open_console.post(path, data=form, headers=SAME_SITE)
                    checked(answer, allowed, f"POST {path} {form}")
            anonymous = send(guarded, SAME_SITE)
            checked(anonymous, ok | {401, 403, 429}, f"no token {path}")
            if not health and path not in ("/login", "/logout", "/static/console.css"):
                assert anonymous.status_code in (401, 405, 404, 429), f"{method} {path}"


def _request(method: str, url: str) -> Callable[[TestClient, dict[str, str]], Any]:
    def send(client: TestClient, headers: dict[str, str]) -> Any:
        return client.request(method, url, headers=headers)

    return send


def test_a_failing_page_is_a_plain_500_with_the_security_headers(
    redis: Redis, settings: Settings
) -> None:
    broken = APIRouter()

    @broken.get("/broken/{rest:path}")
    def fails(rest: str) -> None:
        raise RuntimeError("a bug in a page, with a secret: hunter2")

    app = create_app(settings, redis=redis, routers=[broken])
    path = "/broken/" + "x" * 300
    with capture_logs() as logs:
        answer = TestClient(app, base_url=BASE, raise_server_exceptions=False).get(path)
    assert [e["path"] for e in logs if e["event"] == "web.error"] == [path[:200]]  # bounded
    assert answer.status_code == 500
    assert "hunter2" not in answer.text and "Traceback" not in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
