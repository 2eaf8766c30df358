"""The console's security rules, over HTTP against real Redis: token, proxies, Origin checks
of state changes, read-only mode, headers, bounded inputs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi.testclient import TestClient

from runner.runs.transitions import Runs
from tests.conftest import state_of
from tests.runner.web.conftest import BASE

TOKEN = "s3cret-console-token-for-tests-0123456789ABCDEF"
SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}


def failed_run(enqueue: Callable[..., Any], drain: Callable[..., None]) -> str:
    token: str = enqueue("broken").token
    drain()
    return token


def test_a_cross_site_form_post_is_refused_and_changes_nothing(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    token = failed_run(enqueue, drain)
    for headers in (
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "same-site"},
        {"origin": "null"},
    ):
        answer = client.post("/actions/rerun", data={"token": token}, headers=headers)
        assert answer.status_code == 403, headers
        assert "Origin" in answer.text
    assert state_of(runs, token) == "failed"
    answer = client.post("/actions/rerun", data={"token": token}, headers=SAME_SITE)
    assert answer.status_code == 303
    assert state_of(runs, token) == "queued"


CROSS_SITE = (
    {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    {"origin": "https://evil.example"},
    {"sec-fetch-site": "cross-site"},
)


def routes_of(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, those of included routers too (FastAPI 0.16x wraps an included router in
    one route whose `original_router` holds them)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from routes_of(inner.routes) if inner is not None else (route,)


def mutating_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every route of the app that is not a read, taken from the app itself
    (the site's pages included), with any path parameter filled in."""
    found = set()
    for route in routes_of(client.app.routes):  # type: ignore[attr-defined]
        for method in getattr(route, "methods", None) or ():
            if method not in ("GET", "HEAD", "OPTIONS"):
                found.add((method, re.sub(r"\{[^}]+\}", "x", route.path)))
    return sorted(found)


def test_a_cross_site_request_to_every_mutating_route_is_refused(
    client_for: Callable[..., TestClient], enqueue: Callable[..., Any],
    drain: Callable[..., None], runs: Runs,
) -> None:  # fmt: skip
    # Given the console as the site runs it (its own pages too), a failed and a queued run
    failed = failed_run(enqueue, drain)
    queued = enqueue("noop", token="waiting").token
    client = client_for(tasks_module="jobs")
    routes = mutating_routes(client)
    assert {p for _, p in routes} >= {"/actions/rerun", "/actions/cancel", "/rerun", "/login"}
    for method, path in routes:
        # When a page of another site sends it, with the form a same-site page would send
        for headers in CROSS_SITE:
            for token in (failed, queued):
                answer = client.request(method, path, data={"token": token}, headers=headers)
                # Then the guard refuses it before the route runs
                assert answer.status_code == 403, (method, path, headers)
                assert "Origin / Sec-Fetch-Site did not match" in answer.text
                assert "set-cookie" not in answer.headers
        # (from the console's own pages the route is there and the Origin check lets it by)
        assert client.request(method, path, headers=SAME_SITE).status_code != 403, path
    # And nothing changed
    assert state_of(runs, failed) == "failed" and state_of(runs, queued) == "queued"


def test_the_public_origin_setting_is_what_origin_is_checked_against(
    client_for: Callable[..., TestClient], enqueue: Callable[..., Any],
    drain: Callable[..., None], runs: Runs,
) -> None:  # fmt: skip
    token = failed_run(enqueue, drain)
    client = client_for(web_origin="https://jobs.example.com")
    own_host = client.post("/actions/rerun", data={"token": token}, headers={"origin": BASE})
    assert own_host.status_code == 403
    public = {"origin": "https://jobs.example.com", "sec-fetch-site": "same-origin"}
    assert client.post("/actions/rerun", data={"token": token}, headers=public).status_code == 303
    assert state_of(runs, token) == "queued"


def test_state_changes_are_never_gets(client: TestClient) -> None:
    for path in ("/actions/rerun", "/actions/cancel"):
        assert client.get(path).status_code == 405


def test_with_a_token_every_page_needs_it_by_bearer_or_by_the_sign_in_cookie(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN)
    for path in ("/", "/runs", "/cron", "/runs/anything", "/live/x", "/rerun"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert TOKEN not in answer.text
    assert client.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    for scheme in ("Token", "Basic"):  # the token under another scheme is no sign-in
        answer = client.get("/", headers={"authorization": f"{scheme} {TOKEN}"})
        assert answer.status_code == 401, scheme

    wrong = client.post("/login", data={"token": "nope", "next": "/runs"}, headers=SAME_SITE)
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    signed = client.post("/login", data={"token": TOKEN, "next": "/runs"}, headers=SAME_SITE)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/runs"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()  # a link from a chat lands signed in
    assert TOKEN not in cookie  # the cookie is a session, not the token
    assert client.get("/runs").status_code == 200  # the client now sends the cookie
    client.post("/logout", headers=SAME_SITE)
    client.cookies.clear()
    assert client.get("/runs").status_code == 401


def test_without_sign_in_a_page_answers_the_sign_in_form_and_metrics_a_plain_401(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN)
    for path in ("/", "/cron", "/runs"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert f'name="next" value="{path}"' in answer.text, path
    metrics = client.get("/metrics")
    assert metrics.status_code == 401
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "Authorization: Bearer" in metrics.text
    # the page to come back to keeps its query, cut at 1000 characters
    query = "q=" + "x" * 2000
    page = client.get(f"/runs?{query}").text
    assert f'name="next" value="/runs?{query[:1000]}"' in page
    # public metrics open /metrics, no other page
    scraped = client_for(web_token=TOKEN, web_metrics_public=True)
    for path in ("/", "/cron", "/runs"):
        assert scraped.get(path).status_code == 401, path


def test_sign_in_redirects_only_to_the_consoles_own_pages(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN)
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        data = {"token": TOKEN, "next": target}
        answer = client.post("/login", data=data, headers=SAME_SITE)
        assert answer.headers["location"] == "/"


def test_with_a_token_metrics_need_it_unless_public_and_health_says_only_words(
    client_for: Callable[..., TestClient],
) -> None:
    bearer = {"authorization": f"Bearer {TOKEN}"}
    guarded = client_for(web_token=TOKEN)
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"x-forwarded-for": "1.2.3.4"}).status_code == 401
    assert guarded.get("/metrics", headers=bearer).status_code == 200
    anonymous = guarded.get("/health").json()
    assert all(isinstance(v, (str, bool)) for v in anonymous.values()), anonymous
    assert set(anonymous) == {"ok", "up", "slow", "failing", "deploy"}
    assert isinstance(guarded.get("/health", headers=bearer).json()["up"], dict)
    scraped = client_for(web_token=TOKEN, web_metrics_public=True)
    assert scraped.get("/metrics").status_code == 200
    assert scraped.get("/runs").status_code == 401
    assert isinstance(scraped.get("/health").json()["up"], str)


def test_a_forwarded_request_is_refused_unless_a_token_is_set(
    client_for: Callable[..., TestClient],
) -> None:
    bare = client_for()
    for header in ({"x-forwarded-for": "203.0.113.9"}, {"forwarded": "for=203.0.113.9"}):
        answer = bare.get("/", headers=header)
        assert answer.status_code == 403
        assert "RUNNER_WEB_TOKEN" in answer.text
    assert bare.get("/").status_code == 200
    guarded = client_for(web_token=TOKEN)
    forwarded = {"x-forwarded-for": "203.0.113.9", "authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/", headers=forwarded).status_code == 200


def test_read_only_hides_the_actions_and_refuses_them(
    client_for: Callable[..., TestClient], enqueue: Callable[..., Any],
    drain: Callable[..., None], runs: Runs,
) -> None:  # fmt: skip
    token = failed_run(enqueue, drain)
    client = client_for(web_readonly=True)
    page = client.get(f"/runs/{token}").text
    assert "/actions/rerun" not in page
    assert "read-only" in page
    assert "/rerun?" not in client.get("/runs").text
    for path, data in (("/actions/rerun", {"token": token}), ("/rerun", {"token": token}),
                       ("/actions/cancel", {"token": token})):  # fmt: skip
        answer = client.post(path, data=data, headers=SAME_SITE)
        assert answer.status_code == 403
        assert "read-only" in answer.text
    assert client.get("/rerun?state=failed").status_code == 403
    assert state_of(runs, token) == "failed"


def test_every_page_has_a_strict_csp_and_no_inline_script(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    token = failed_run(enqueue, drain)
    for path in ("/", "/runs", f"/runs/{token}", "/cron", "/rerun?state=failed", "/login"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store", path
        html = answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
    static = client.get("/static/console.css")  # the same headers, and it may be cached
    assert static.status_code == 200 and static.headers["x-frame-options"] == "DENY"
    assert "no-store" not in static.headers.get("cache-control", "")


def test_page_sizes_and_ranges_are_bounded(client: TestClient, enqueue: Callable[..., Any]) -> None:
    for i in range(230):
        enqueue("noop", token=f"bulk-{i:03d}")
    rows = client.get("/runs?limit=100000").text.count('class="token" href="/runs/')
    assert rows == 200
    for query in ("since=9999d", "limit=abc", "limit=%C2%B2", "state=lost", "before=garbage",
                  "before=nan:x"):  # fmt: skip
        answer = client.get(f"/runs?{query}")
        assert answer.status_code == 400, query
        assert query.split("=")[0] in answer.text
        assert answer.headers["x-frame-options"] == "DENY"
