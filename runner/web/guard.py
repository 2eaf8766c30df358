"""Every request passes here first: the Host allow-list, proxy headers, the token (bearer or a
session), sign-in throttling, the Origin check of every state change, read-only mode, and the
security headers on every response, errors included. One place, so no route can forget."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.config import Settings
from runner.web.clients import client_address, proxy_headers
from runner.web.hosts import HostList
from runner.web.sessions import Session, Sessions, equal
from runner.web.throttle import SignInThrottle

log = structlog.get_logger("runner.web")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEALTH, METRICS = "/health", "/metrics"
SIGN_IN = frozenset({"/login", "/logout"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


@dataclass
class Visitor:
    """What the guard learnt of a request, for the routes (`request.state.visitor`)."""

    client: str
    signed_in: bool = False  # by the token (always True on a console without one)
    session: Session | None = None
    renewed: Session | None = None  # a session due a later idle deadline: a new cookie
    health_details: bool = False  # /health may show more than its status words

    @property
    def handle(self) -> str:
        return self.session.handle if self.session else ("bearer" if self.signed_in else "-")


class Guard:
    """ASGI middleware enforcing the console's security rules before any route runs."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, hosts: HostList, sessions: Sessions | None,
        throttle: SignInThrottle, trusted: tuple[str, int] | None,
        sign_in_page: Callable[[str], str],
    ) -> None:  # fmt: skip
        self.app = app
        self.settings = settings
        self.hosts = hosts
        self.sessions = sessions
        self.throttle = throttle
        self.trusted = trusted
        self.sign_in_page = sign_in_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: list[bool] = []
        send = self._with_headers(scope, send, started)
        try:
            refusal = await run_in_threadpool(self.refusal, scope, Headers(scope=scope))
            await (refusal or self.app)(scope, receive, send)
        except Exception:
            log.exception("web.error", path=scope["path"][:200], method=scope["method"])
            if not started:  # else the client sees a cut response; nothing more can be sent
                await _refuse(500, "error: the console failed on this request; see its log")(
                    scope, receive, send
                )

    def refusal(self, scope: Scope, headers: Headers) -> Response | None:
        """The response refusing this request, or None to let it through."""
        path: str = scope["path"]
        method: str = scope["method"]
        token = self.settings.web_token
        visitor = Visitor(client_address(scope, headers, self.trusted))
        scope.setdefault("state", {})["visitor"] = visitor
        allowed_host = self.hosts.allows(headers.get("host", ""))
        proxied = proxy_headers(headers)
        if path == HEALTH and (not allowed_host or (proxied and token is None)):
            return None  # a probe of any name: status words only
        if not allowed_host:
            return _refuse(400, "refused: this Host is not one of the console's names; add it "
                           "to RUNNER_WEB_HOSTS (host[:port], comma-separated)")  # fmt: skip
        if proxied and token is None:
            return _refuse(
                403, f"refused: this request came through a proxy ({', '.join(proxied)}) and "
                "the console has no token; set RUNNER_WEB_TOKEN (README: behind a proxy)",
            )  # fmt: skip
        if token is not None and method == "POST" and path == "/login":
            wait = self.throttle.wait(visitor.client)
            if wait:
                return _refuse(429, "refused: too many sign-in attempts; wait and try again",
                               headers={"retry-after": str(wait)})  # fmt: skip
        refusal = self._sign_in(visitor, headers, token)
        if refusal is not None:
            return refusal
        visitor.health_details = visitor.signed_in
        open_path = path.startswith("/static/") or path in SIGN_IN or path == HEALTH
        if not visitor.signed_in and not open_path:
            if path == METRICS and self.settings.web_metrics_public:
                return None
            if path == METRICS:
                return _refuse(401, "unauthorized: send Authorization: Bearer $RUNNER_WEB_TOKEN")
            query = scope.get("query_string", b"").decode("latin-1")[:1000]
            return HTMLResponse(self.sign_in_page(path + (f"?{query}" if query else "")), 401)
        if method not in SAFE_METHODS:
            if not self._same_origin(headers):
                return _refuse(403, "refused: a state change must come from the console's own "
                               "pages (Origin / Sec-Fetch-Site did not match)")  # fmt: skip
            if self.settings.web_readonly and path not in SIGN_IN:
                return _refuse(403, "refused: the console is read-only (RUNNER_WEB_READONLY=1)")
        return None

    def _sign_in(self, visitor: Visitor, headers: Headers, token: str | None) -> Response | None:
        """Mark `visitor` signed in by its bearer token or session cookie; a wrong bearer token
        counts as a sign-in attempt (429 when there were too many)."""
        if token is None:
            visitor.signed_in = True
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            if equal(given.strip(), token):
                visitor.signed_in = True
                return None
            log.warning("web.sign_in_failed", client=visitor.client, by="bearer")
            wait = self.throttle.wait(visitor.client)
            if wait:
                return _refuse(429, "refused: too many sign-in attempts; wait and try again",
                               headers={"retry-after": str(wait)})  # fmt: skip
            return None
        value = _cookie(headers, self.sessions.cookie) if self.sessions else None
        if value and self.sessions is not None:
            visitor.session = self.sessions.check(value)
            if visitor.session is not None:
                visitor.signed_in = True
                visitor.renewed = self.sessions.renewed(visitor.session)
        return None

    def _same_origin(self, headers: Headers) -> bool:
        """Browsers send Origin and Sec-Fetch-Site with every POST; a cross-site form post
        fails here. A script's request (neither header) cannot be forged by a web page."""
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return False
        origin = headers.get("origin")
        return origin is None or self.hosts.allows_origin(origin, public=self.settings.web_origin)

    def _with_headers(self, scope: Scope, send: Send, started: list[bool]) -> Send:
        static = scope["path"].startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(True)
                extra = list(HEADERS)
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                visitor: Visitor | None = scope.get("state", {}).get("visitor")
                if visitor is not None and visitor.renewed is not None and self.sessions:
                    extra.append((b"set-cookie", cookie_header(self.sessions, visitor.renewed)))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return sending


def cookie_header(sessions: Sessions, session: Session) -> bytes:
    """The Set-Cookie value of a session: HttpOnly, SameSite=Lax (a link from a chat lands
    signed in; POSTs stay Origin-checked), Secure and __Host- on an https origin."""
    response = Response()
    response.set_cookie(
        sessions.cookie, sessions.value(session), max_age=max(1, int(session.ends - time.time())),
        httponly=True, samesite="lax", secure=sessions.secure, path="/",
    )  # fmt: skip
    return response.headers["set-cookie"].encode("latin-1")


def _cookie(headers: Headers, name: str) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:  # a malformed Cookie header is no sign-in, not a crash
        return None
    morsel = cookie.get(name)
    return morsel.value if morsel is not None else None


def _refuse(status: int, text: str, *, headers: dict[str, Any] | None = None) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers=headers)
