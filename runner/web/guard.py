"""Every request passes here first: the token, forwarded requests, the Origin check of every
state change, read-only mode and the security headers. One place, so no route can forget."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from http.cookies import SimpleCookie

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.config import Settings

COOKIE = "runner_console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROBES = frozenset({"/health", "/metrics"})
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
]


def session_value(token: str) -> str:
    """What the sign-in cookie holds: derived from the token, so the cookie is not the token."""
    return hmac.new(token.encode(), b"runner-console-session", hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """ASGI middleware enforcing the console's security rules before any route runs."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, sign_in_page: Callable[[str], str]
    ) -> None:
        self.app = app
        self.settings = settings
        self.sign_in_page = sign_in_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope, Headers(scope=scope))
        send = self._with_headers(scope, send)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope, headers: Headers) -> Response | None:
        """The response refusing this request, or None to let it through."""
        path: str = scope["path"]
        method: str = scope["method"]
        token = self.settings.web_token
        open_probe = path in PROBES and not self.settings.web_protect_metrics
        if open_probe:
            return None
        if token is None and ("forwarded" in headers or "x-forwarded-for" in headers):
            return _refuse(
                403, "refused: this request came through a proxy and the console has no "
                "token; set RUNNER_WEB_TOKEN (see the README's reverse proxy section)",
            )  # fmt: skip
        signed_in = token is None or self._authorized(headers, token)
        scope.setdefault("state", {})["signed_in"] = token is not None and signed_in
        if not signed_in and not path.startswith("/static/") and path not in SIGN_IN:
            if path in PROBES:
                return _refuse(401, "unauthorized: send Authorization: Bearer $RUNNER_WEB_TOKEN")
            query = scope.get("query_string", b"").decode("latin-1")[:1000]
            return HTMLResponse(self.sign_in_page(path + (f"?{query}" if query else "")), 401)
        if method not in SAFE_METHODS:
            if not self._same_origin(scope, headers):
                return _refuse(403, "refused: a state change must come from the console's own "
                               "pages (Origin / Sec-Fetch-Site did not match)")  # fmt: skip
            if self.settings.web_readonly and path not in SIGN_IN:
                return _refuse(403, "refused: the console is read-only (RUNNER_WEB_READONLY=1)")
        return None

    def _authorized(self, headers: Headers, token: str) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given and _equal(given.strip(), token):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no sign-in, not a crash
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and _equal(morsel.value, session_value(token))

    def _same_origin(self, scope: Scope, headers: Headers) -> bool:
        """Browsers send Origin and Sec-Fetch-Site with every POST; a cross-site form post
        fails here. A script's request (neither header) cannot be forged by a web page."""
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return False
        origin = headers.get("origin")
        if origin is None:
            return True
        expected = self.settings.web_origin or f"{scope['scheme']}://{headers.get('host', '')}"
        return _equal(origin.rstrip("/"), expected)

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        static = scope["path"].startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return sending


def _refuse(status: int, text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status)
