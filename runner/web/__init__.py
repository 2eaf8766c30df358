"""The operator console and its HTTP endpoints (FastAPI). A site adds pages the way it adds
CLI commands: an `APIRouter` in `registry.web_routers` (its first tag names the link), whose
routes take `ConsoleDep` and answer with `render(request, site_template(request, SOURCE), {...})`
where SOURCE extends "base.html"."""

from __future__ import annotations

from runner.web.app import create_app
from runner.web.console import Console, ConsoleDep, RedisDep, SettingsDep
from runner.web.pages import render, site_template

__all__ = [
    "Console",
    "ConsoleDep",
    "RedisDep",
    "SettingsDep",
    "create_app",
    "render",
    "site_template",
]
