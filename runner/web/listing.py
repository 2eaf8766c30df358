"""The runs list: a filter read from the URL (bounded), and one page of runs, newest first,
from the run indexes and the history tables (runner.runs.pages)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from redis import Redis

from runner.config import Settings
from runner.errors import BadRequest, HistoryUnavailable
from runner.record import RunRecord, RunState
from runner.runs import pages
from runner.runs.history import HistoryStore
from runner.runs.index import RunIndex, RunQuery
from runner.runs.search import MAX_CHARS, MIN_CHARS, Search, search_live, search_runs
from runner.web.params import whole_number

STATES = tuple(str(s) for s in RunState)
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What /runs shows: every field comes from the query string and is bounded here."""

    state: str = ""
    task: str = ""
    queue: str = ""
    token: str = ""  # a token prefix
    since: str = ""  # one of RANGES; '' is all
    limit: int = 50
    before: str = ""  # the page cursor (RunPage.next of the page before)
    search: str = ""  # a text in the runs' arguments or errors (runner.runs.search)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RunFilter:
        """The filter of a query string; raises BadRequest naming a state, range or size that
        is not one of the console's (a size is rounded to the nearest page size)."""
        state = query.get("state", "")
        since = query.get("since", "")
        if state not in ("", *STATES):
            raise BadRequest(f"state={state[:40]!r} is not one of {', '.join(STATES)}")
        if since not in ("", *RANGES):
            raise BadRequest(f"since={since[:40]!r} is not one of {', '.join(RANGES)}")
        limit = whole_number(query.get("limit"), "limit", high=10**9)
        search = query.get("search", "").strip()
        if search and not MIN_CHARS <= len(search) <= MAX_CHARS:
            raise BadRequest(f"search={search[:40]!r} needs {MIN_CHARS} to {MAX_CHARS} characters")
        return cls(
            state=state,
            task=query.get("task", "").strip()[:100],
            queue=query.get("queue", "").strip()[:100],
            token=query.get("token", "").strip()[:300],
            since=since,
            limit=min(PAGE_SIZES, key=lambda size: abs(size - (50 if limit is None else limit))),
            before=query.get("before", "")[:400],
            search=search,
        )

    def query(self, **changes: Any) -> str:
        """This filter as a query string (with `changes`), for links that keep it."""
        fields = {k: v for k, v in self._fields().items() if k not in changes} | changes
        shown = {k: v for k, v in fields.items() if v not in ("", None)}
        if shown.get("limit") == 50:
            del shown["limit"]
        return urlencode(shown)

    def _fields(self) -> dict[str, Any]:
        return {
            "state": self.state, "task": self.task, "queue": self.queue, "token": self.token,
            "since": self.since, "limit": self.limit, "before": self.before,
            "search": self.search,
        }  # fmt: skip

    def matches(self, state: str, task: str, queue: str) -> bool:
        return (
            (not self.state or state == self.state)
            and (not self.task or task == self.task)
            and (not self.queue or queue == self.queue)
        )


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of runs, the cursor of the next (older) page, counts per state, and what the
    page could not show (the history database unreachable: the runs in Redis alone)."""

    runs: list[RunRecord]
    next_before: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    notice: str = ""


def runs_page(
    redis: Redis, settings: Settings, flt: RunFilter, *, history: HistoryStore | None = None
) -> RunsPage:
    """One page of the runs that match, newest first, read from the run indexes and (with
    `history`) the history tables, one order and one cursor over both (runner.runs.pages);
    counts per state over the filter's time range, both stores'."""
    since = time.time() - RANGES[flt.since] if flt.since else None
    query = RunQuery(
        state=RunState(flt.state) if flt.state else None, task=flt.task or None,
        queue=flt.queue or None, token_prefix=flt.token, since=since, limit=flt.limit,
        after=flt.before or None,
    )  # fmt: skip
    notice = ""
    try:
        try:
            page = pages.runs_page(redis, settings, query, history)
        except HistoryUnavailable as exc:  # the runs in Redis are still worth showing
            notice = f"{exc}: showing the runs in Redis only"
            history = None
            page = pages.runs_page(redis, settings, query, None)
    except ValueError:  # a hand-edited cursor
        raise BadRequest(f"before={flt.before[:40]!r} is not a page cursor of this list") from None
    if flt.search:  # one page of matches, no cursor; without `history`, Redis's alone
        wanted = Search(flt.search, state=query.state, task=query.task, since=since,
                        limit=flt.limit)  # fmt: skip
        searched = (search_live(redis, settings, wanted) if history is None
                    else search_runs(redis, settings, history, wanted))  # fmt: skip
        found = [r for r in searched
                 if flt.matches(r.state, r.task, r.queue)
                 and r.token.startswith(flt.token)]  # fmt: skip
        return RunsPage(found, "", page.counts, notice)
    return RunsPage(page.runs, page.next or "", page.counts, notice)


def recent_failures(
    redis: Redis, settings: Settings, *, within: float, limit: int = 10
) -> list[RunRecord]:
    """The runs that failed within `within` seconds, newest failure first."""
    query = RunQuery(state=RunState.FAILED, since=time.time() - within, limit=limit)
    return RunIndex(redis, settings).page(query).runs
