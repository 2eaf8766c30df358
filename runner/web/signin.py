"""Signing in with the console's token: a form that sets an HttpOnly, SameSite=Strict cookie."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from runner.web.console import SettingsDep
from runner.web.guard import COOKIE, session_value
from runner.web.pages import render

router = APIRouter()
COOKIE_DAYS = 7


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
    """Set the session cookie when `token` is the console's token (compared in constant time)."""
    expected = settings.web_token
    if expected is None:
        return RedirectResponse(local_path(next), status_code=303)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        context = {"next": local_path(next), "wrong": True}
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(local_path(next), status_code=303)
    secure = (settings.web_origin or "").startswith("https://") or request.url.scheme == "https"
    response.set_cookie(
        COOKIE, session_value(expected), max_age=COOKIE_DAYS * 86400, httponly=True,
        samesite="strict", secure=secure, path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
def sign_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
