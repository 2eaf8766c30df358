"""Pages of runs across both stores: Redis's indexes (runner.runs.index) and history
(runner.runs.history), one order and one cursor, so paging from the newest run to the oldest
shows each run once, wherever it lives.

The order is Redis's: by the index score (creation time, or with a state when the run entered
it, which for a run in history is when it finished), then by token, both descending. A page
takes the next `limit` runs after the cursor from each store, drops the runs of history's that
Redis holds (Redis wins for a run in both: a mover killed between its copy and its delete),
merges them and keeps the first `limit`; the cursor is the last one's `score:token`. When the
Redis walk stopped early (it examines at most `SCAN_CAP` entries a page), the page ends where
it stopped, so no run of Redis's between there and history's next one is skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import RunRecord
from runner.runs.index import RunIndex, RunPage, RunQuery

if TYPE_CHECKING:
    from runner.runs.history import HistoryStore

Key = tuple[float, str]  # (score, token): a run's place in the order


def runs_page(
    redis: Redis, settings: Settings, query: RunQuery, history: HistoryStore | None
) -> RunPage:
    """One page of `query` over Redis and (when given) history; counts per state are both
    stores'. Raises ValueError for a malformed cursor, HistoryUnavailable when history cannot
    be read (the caller may fall back to `history=None`)."""
    live = RunIndex(redis, settings).page(query)
    if history is None:
        return live
    before = _cursor(query.after) if query.after else None
    moved = history.listing(
        state=query.state, task=query.task, queue=query.queue, token_prefix=query.token_prefix,
        since=query.since, before=before, limit=query.limit,
    )  # fmt: skip
    moved = _not_in_redis(redis, settings, moved)
    items: list[tuple[Key, RunRecord]] = [
        ((s, r.token), r) for r, s in zip(live.runs, live.scores, strict=True)
    ]
    items += [((_score(r, query), r.token), r) for r in moved]
    stop = _cursor(live.next) if live.next and len(live.runs) < query.limit else None
    if stop is not None:  # Redis looked no further than `stop`: neither may this page
        items = [item for item in items if item[0] > stop]
    items.sort(key=lambda item: item[0], reverse=True)
    page = items[: query.limit]
    if len(items) > query.limit or (page and (live.next or len(moved) >= query.limit)):
        after: str | None = _text(page[-1][0])
    else:
        after = live.next if stop is not None else None
    counts = dict(live.counts)
    for state, n in history.counts(since=query.since).items():
        counts[state] = counts.get(state, 0) + n
    return RunPage([r for _, r in page], after, counts, [key[0] for key, _ in page])


def all_runs(
    redis: Redis, settings: Settings, query: RunQuery, history: HistoryStore | None, *,
    limit: int = 0,
) -> list[RunRecord]:  # fmt: skip
    """Every run of `query` across both stores, newest first, at most `limit` (0: all)."""
    found: list[RunRecord] = []
    after = query.after
    while True:
        wanted = min(500, limit - len(found)) if limit else 500
        page = runs_page(redis, settings, replace(query, limit=wanted, after=after), history)
        found += page.runs
        after = page.next
        if after is None or (limit and len(found) >= limit):
            return found


def _score(run: RunRecord, query: RunQuery) -> float:
    """A moved run's score in the order: when it finished with a state given, else created."""
    return float((run.finished_at or 0.0) if query.state else run.created_at)


def _not_in_redis(redis: Redis, settings: Settings, moved: list[RunRecord]) -> list[RunRecord]:
    keys = Keys(settings.prefix)
    pipe = redis.pipeline(transaction=False)
    for run in moved:
        pipe.exists(keys.run(run.token))
    return [run for run, held in zip(moved, pipe.execute(), strict=True) if not held]


def _cursor(text: str) -> Key:
    score, sep, token = text.partition(":")
    if not sep:
        raise ValueError(f"page cursor {text!r} is not 'score:token'")
    return float(score), token


def _text(key: Key) -> str:
    return f"{key[0]!r}:{key[1]}"
