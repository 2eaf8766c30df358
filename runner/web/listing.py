"""The runs list: a filter read from the URL (bounded), and one page of runs, newest first."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import urlencode

from redis import Redis

from runner.keys import Keys
from runner.record import RunRecord, RunState, texts

STATES = tuple(str(s) for s in RunState)
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
PAGE_SIZES = (25, 50, 100, 200)
SCAN_CAP = 20_000  # runs examined per request at most: a page never reads all history
_BATCH = 500


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What /runs shows: every field comes from the query string and is bounded here."""

    state: str = ""
    task: str = ""
    queue: str = ""
    token: str = ""  # a token prefix
    since: str = ""  # one of RANGES; '' is all
    limit: int = 50
    before: str = ""  # the page cursor: '<created_at>:<token>' of the last run shown

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RunFilter:
        """Unknown states, ranges and sizes fall back to the defaults rather than fail."""
        state = query.get("state", "")
        since = query.get("since", "")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 50
        return cls(
            state=state if state in STATES else "",
            task=query.get("task", "").strip()[:100],
            queue=query.get("queue", "").strip()[:100],
            token=query.get("token", "").strip()[:300],
            since=since if since in RANGES else "",
            limit=min(PAGE_SIZES, key=lambda size: abs(size - limit)),
            before=query.get("before", "")[:400],
        )

    def query(self, **changes: Any) -> str:
        """This filter as a query string (with `changes`), for links that keep it."""
        fields = {k: v for k, v in self._fields().items() if k not in changes} | changes
        shown = {k: v for k, v in fields.items() if v not in ("", None)}
        if shown.get("limit") == 50:
            del shown["limit"]
        return urlencode(shown)

    def without_paging(self) -> RunFilter:
        return replace(self, before="")

    def _fields(self) -> dict[str, Any]:
        return {
            "state": self.state, "task": self.task, "queue": self.queue, "token": self.token,
            "since": self.since, "limit": self.limit, "before": self.before,
        }  # fmt: skip

    def matches(self, state: str, task: str, queue: str) -> bool:
        return (
            (not self.state or state == self.state)
            and (not self.task or task == self.task)
            and (not self.queue or queue == self.queue)
        )


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of runs, the cursor of the next (older) page, and counts per state."""

    runs: list[RunRecord]
    next_before: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    capped: bool = False  # the counts stop at SCAN_CAP runs


def runs_page(redis: Redis, keys: Keys, flt: RunFilter, *, after: float | None = None) -> RunsPage:
    """Walk the runs index newest first from the cursor, keeping runs that match; counts per
    state cover the same walk (the filter's state aside), up to SCAN_CAP runs. `after`
    (a time) overrides the filter's range."""
    low: float | str = "-inf"
    if after is not None:
        low = after
    elif flt.since:
        low = time.time() - RANGES[flt.since]
    high, after_token = _cursor(flt.before)
    counts: Counter[str] = Counter()
    page: list[str] = []
    more, last = False, ""
    scanned, offset = 0, 0
    while scanned < SCAN_CAP:
        batch = cast(
            list[tuple[bytes, float]],
            redis.zrevrangebyscore(keys.runs, high, low, start=offset, num=_BATCH, withscores=True),
        )
        offset += len(batch)
        entries = [(t.decode(), s) for t, s in batch]
        if after_token is not None:
            entries = [(t, s) for t, s in entries if not (s == high and t >= after_token)]
        if flt.token:
            entries = [(t, s) for t, s in entries if t.startswith(flt.token)]
        pipe = redis.pipeline(transaction=False)
        for token, _ in entries:
            pipe.hmget(keys.run(token), "state", "task", "queue")
        for (token, score), values in zip(entries, pipe.execute(), strict=True):
            state, task, queue = texts([v or b"" for v in values])
            if not state:
                continue  # expired between the index and the record
            scanned += 1
            if flt.matches("", task, queue):
                counts[state] += 1
            if flt.matches(state, task, queue):
                if len(page) < flt.limit:
                    page.append(token)
                    last = f"{score!r}:{token}"
                else:
                    more = True
        if len(batch) < _BATCH:
            break
    records = _records(redis, keys, page)
    return RunsPage(
        runs=records,
        next_before=last if more and page else "",
        counts={s: counts[s] for s in STATES},
        scanned=scanned,
        capped=scanned >= SCAN_CAP,
    )


def _cursor(before: str) -> tuple[float | str, str | None]:
    score, sep, token = before.partition(":")
    try:
        return (float(score), token) if sep else ("+inf", None)
    except ValueError:
        return "+inf", None


def _records(redis: Redis, keys: Keys, tokens: list[str]) -> list[RunRecord]:
    pipe = redis.pipeline(transaction=False)
    for token in tokens:
        pipe.hgetall(keys.run(token))
    return [RunRecord.from_hash(raw) for raw in pipe.execute() if raw]


def recent_failures(redis: Redis, keys: Keys, *, within: float, limit: int = 10) -> list[RunRecord]:
    """The newest failed runs created within `within` seconds (overview's failing line)."""
    flt = RunFilter(state=RunState.FAILED, limit=limit)
    return runs_page(redis, keys, flt, after=time.time() - within).runs
