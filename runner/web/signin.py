"""Signing in with the console's token: a new session at every sign-in (its cookie HttpOnly,
SameSite=Lax), ended for good at sign-out; every attempt is logged, never the token."""

from __future__ import annotations

from typing import Annotated, cast

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from runner.connections.redis import REDIS_DOWN
from runner.web.console import SettingsDep
from runner.web.guard import Visitor, cookie_header
from runner.web.pages import render
from runner.web.sessions import Sessions, equal

router = APIRouter()
log = structlog.get_logger("runner.web")


def local_path(target: str | None) -> str:
    """Where to go after signing in: a path of this console only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def sign_in_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": local_path(next), "wrong": False})


@router.post("/login")
def sign_in(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """A new session when `token` is the console's token (compared in constant time); the
    session the browser had before, if any, is ended (rotation)."""
    expected = settings.web_token
    sessions: Sessions | None = request.app.state.sessions
    visitor = _visitor(request)
    if expected is None or sessions is None:
        return RedirectResponse(local_path(next), status_code=303)
    if not equal(token, expected):
        log.warning("web.sign_in_failed", client=visitor.client, by="form")
        context = {"next": local_path(next), "wrong": True}
        return render(request, "login.html", context, status=401)
    if visitor.session is not None:
        _end(sessions, visitor)
    session = sessions.start()
    visitor.session, visitor.renewed = session, None
    log.info("web.sign_in", client=visitor.client, session=session.handle)
    response = RedirectResponse(local_path(next), status_code=303)
    response.raw_headers.append((b"set-cookie", cookie_header(sessions, session)))
    return response


@router.post("/logout")
def sign_out(request: Request) -> Response:
    """End this browser's session: its cookie is refused from now on, copied or not."""
    sessions: Sessions | None = request.app.state.sessions
    visitor = _visitor(request)
    response = RedirectResponse("/login", status_code=303)
    if sessions is None:
        return response
    if visitor.session is not None:
        _end(sessions, visitor)
        log.info("web.sign_out", client=visitor.client, session=visitor.session.handle)
    visitor.renewed = None
    response.delete_cookie(
        sessions.cookie, path="/", httponly=True, samesite="lax", secure=sessions.secure
    )
    return response


def _visitor(request: Request) -> Visitor:
    return cast(Visitor, request.state.visitor)


def _end(sessions: Sessions, visitor: Visitor) -> None:
    assert visitor.session is not None
    try:
        sessions.revoke(visitor.session)
    except REDIS_DOWN:
        log.warning("web.sign_out_not_recorded", reason="redis is down",
                    session=visitor.session.handle)  # fmt: skip
