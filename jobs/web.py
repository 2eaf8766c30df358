"""The console's imports page (`/imports`): recent imports with their five counters, and one
import's rejects (position, source id, reason), paged. Added to `runner web` by the registry."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from jobs.progress import OUTCOMES, import_rejects, imports
from jobs.store import engine_for
from runner.web import ConsoleDep, render, site_template

router = APIRouter(tags=["Imports"])
PAGE = 50

PAGE_SOURCE = """{% extends "base.html" %}
{% from "macros.html" import run_link, time %}
{% block title %}Imports{% endblock %}
{% block main %}
<h1>Imports</h1>
{% if rejects is not none %}
<h2>Rejects of {{ run_link(token) }}</h2>
{% if rejects %}
<table class="grid rejects"><tr><th>position</th><th>source id</th><th>reason</th></tr>
{% for r in rejects %}
<tr><td class="num">{{ r.position }}</td><td><code>{{ r.source_id or '-' }}</code></td>
<td class="error-text">{{ r.reason }}</td></tr>
{% endfor %}
</table>
{% else %}
<p class="muted">No rejects{% if after %} after position {{ after }}{% endif %}.</p>
{% endif %}
<nav class="pager">
{% if more %}
<a rel="next" href="/imports?token={{ token|urlencode }}&amp;after={{ rejects[-1].position }}"
>next rejects »</a>
{% endif %}
<a href="/imports">all imports</a></nav>
{% else %}
<table class="grid imports">
<tr><th>run</th><th>source</th><th>state</th>
{% for o in outcomes %}<th>{{ o }}</th>{% endfor %}<th>started</th><th>finished</th></tr>
{% for i in rows %}
<tr><td>{{ run_link(i.token) }}</td><td>{{ i.source }}</td><td>{{ i.state }}</td>
{% for o in outcomes %}
<td class="num">{% if o == 'rejected' and i[o] %}
<a href="/imports?token={{ i.token|urlencode }}">{{ i[o] }}</a>
{% else %}{{ i[o] }}{% endif %}</td>
{% endfor %}
<td>{{ time(i.started_at.timestamp() if i.started_at else None) }}</td>
<td>{{ time(i.finished_at.timestamp() if i.finished_at else None) }}</td></tr>
{% else %}
<tr><td colspan="10" class="muted">No import has started yet.</td></tr>
{% endfor %}
</table>
<nav class="pager">
{% if page > 0 %}<a href="/imports?page={{ page - 1 }}">« newer</a>{% endif %}
{% if more %}<a rel="next" href="/imports?page={{ page + 1 }}">older »</a>{% endif %}
</nav>
{% endif %}
{% endblock %}
"""


@router.get("/imports")
def imports_page(request: Request, console: ConsoleDep) -> Response:
    """`?page=N` pages the imports (newest first); `?token=T&after=P` pages one's rejects."""
    engine = engine_for(console.settings.store_url)
    token = request.query_params.get("token", "")[:300]
    context: dict[str, Any] = {"outcomes": OUTCOMES, "rejects": None, "token": token}
    with engine.connect() as conn:
        if token:
            after = _number(request.query_params.get("after"), high=10**9)
            query = (
                sa.select(import_rejects.c.position, import_rejects.c.source_id,
                          import_rejects.c.reason)
                .where(import_rejects.c.token == token, import_rejects.c.position > after)
                .order_by(import_rejects.c.position).limit(PAGE + 1)
            )  # fmt: skip
            found = list(conn.execute(query).mappings())
            context |= {"rejects": found[:PAGE], "more": len(found) > PAGE, "after": after}
        else:
            page = _number(request.query_params.get("page"), high=200)
            query = (
                sa.select(imports).order_by(imports.c.started_at.desc())
                .offset(page * PAGE).limit(PAGE + 1)
            )  # fmt: skip
            found = list(conn.execute(query).mappings())
            context |= {"rows": found[:PAGE], "more": len(found) > PAGE, "page": page}
    return render(request, site_template(request, PAGE_SOURCE), context)


def _number(raw: str | None, *, high: int) -> int:
    """A page number or position from the URL, bounded to [0, high]."""
    try:
        return max(0, min(high, int(raw or 0)))
    except ValueError:
        return 0
