"""Paging through runs by the indexes the state-changing scripts keep (never a scan of every
run): by state (`Keys.by_state`, scored by when the run entered the state), by task and by
queue (`Keys.by_task`, `Keys.by_queue`, scored by creation time), and all runs (`Keys.runs`).

One page is one Lua call that walks the narrowest index newest first, keeps the tokens that
are in the other filters' indexes and start with the token prefix, and stops at `limit`
matches or after examining `SCAN_CAP` entries (then `RunPage.next` continues from there);
then one pipelined read of the page's run records. `RunIndex.runs` follows the pages for a
listing longer than one page (the CLI's `runner runs`, `rerun --failed`); it is the one way
runs are listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, cast

from redis import Redis

from runner.config import Settings
from runner.connections.lua import registered
from runner.keys import Keys
from runner.record import RunRecord, RunState, texts

SCAN_CAP = 20_000  # index entries one page examines at most
CHUNK = 500

# Returns {tokens, scores, next score or '', next token or ''}: the page, newest first.
_PAGE = """
local primary = KEYS[1]       -- the index walked, newest first; KEYS[2..]: indexes a token
                              -- must also be in (task, queue)
local max_score = ARGV[1]     -- newest score wanted ('+inf', or the cursor's score)
local min_score = ARGV[2]     -- oldest score wanted ('-inf')
local after = ARGV[3]         -- the cursor's token: skip it and those before it at max_score
local limit = tonumber(ARGV[4])  -- runs wanted
local prefix = ARGV[5]        -- a token prefix ('' for any)
local cap = tonumber(ARGV[6]) -- entries to examine at most

local tokens, scores = {}, {}
local offset, examined = 0, 0
while examined < cap do
  local batch = redis.call('ZREVRANGEBYSCORE', primary, max_score, min_score, 'WITHSCORES',
                           'LIMIT', offset, 500)
  if #batch == 0 then return {tokens, scores, '', ''} end
  for i = 1, #batch, 2 do
    local token, score = batch[i], batch[i + 1]
    examined = examined + 1
    local skip = after ~= '' and tonumber(score) == tonumber(max_score) and token >= after
    local wanted = not skip and (prefix == '' or string.sub(token, 1, #prefix) == prefix)
    for k = 2, #KEYS do
      local filter = KEYS[k]
      if wanted and not redis.call('ZSCORE', filter, token) then wanted = false end
    end
    if wanted then
      tokens[#tokens + 1] = token
      scores[#scores + 1] = score
      if #tokens >= limit then return {tokens, scores, score, token} end
    end
    if examined >= cap then return {tokens, scores, score, token} end
  end
  offset = offset + 500
end
return {tokens, scores, '', ''}
"""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs, newest first. `since`/`until` (epoch seconds) bound when the run entered
    `state` when a state is given, else when it was created. `after` is a page's `next`."""

    state: RunState | None = None
    task: str | None = None
    queue: str | None = None
    token_prefix: str = ""
    since: float | None = None
    until: float | None = None
    limit: int = 50
    after: str | None = None


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page: its runs (newest first), the cursor of the next page (None: no more), and
    how many runs each state holds in the query's time range (other filters ignored)."""

    runs: list[RunRecord]
    next: str | None
    counts: dict[str, int] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)  # each run's score in the index walked


class RunIndex:
    """Pages of runs and counts per state, from the indexes."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.prefix)
        self._page = registered(redis, _PAGE)

    def page(self, query: RunQuery) -> RunPage:
        """One page of `query`; raises ValueError for a malformed `after` cursor."""
        scored, cursor = self._walk(query)
        counts = self.counts(since=query.since, until=query.until)
        return RunPage([r for r, _ in scored], cursor, counts, [score for _, score in scored])

    def _walk(self, query: RunQuery) -> tuple[list[tuple[RunRecord, float]], str | None]:
        """One page's runs with their scores, and the next page's cursor (None: no more)."""
        indexes = [self.keys.by_task(query.task)] if query.task else []
        indexes += [self.keys.by_queue(query.queue)] if query.queue else []
        if query.state:
            primary = self.keys.by_state(query.state)
        elif indexes:
            primary = indexes.pop(0)
        else:
            primary = self.keys.runs
        newest = "+inf" if query.until is None else repr(query.until)
        cursor_token = ""
        if query.after:
            score, sep, cursor_token = query.after.partition(":")
            if not sep or not math.isfinite(float(score)):
                raise ValueError(f"page cursor {query.after!r} is not 'score:token'")
            newest = repr(float(score))
        oldest = "-inf" if query.since is None else repr(query.since)
        args: list[Any] = [newest, oldest, cursor_token, max(1, query.limit), query.token_prefix]
        args.append(SCAN_CAP)
        tokens, scores, next_score, next_token = cast(
            list[Any], self._page(keys=[primary, *indexes], args=args)
        )
        records = self._records(texts(tokens))
        scored = [(r, float(score)) for r, score in zip(records, scores, strict=True) if r]
        more = texts([next_score])[0]
        return scored, f"{more}:{texts([next_token])[0]}" if more else None

    def runs(self, query: RunQuery | None = None, *, limit: int = 0) -> list[RunRecord]:
        """The runs of `query` newest first (from its `after` cursor on), page after page of up
        to CHUNK runs, at most `limit` of them (0: all); the query's own `limit` (one page's
        size) is not used. Raises ValueError for a malformed `after` cursor."""
        query = query or RunQuery()
        found: list[RunRecord] = []
        after = query.after
        while True:
            wanted = min(CHUNK, limit - len(found)) if limit else CHUNK
            scored, after = self._walk(replace(query, limit=wanted, after=after))
            found += [r for r, _ in scored]
            if after is None or (limit and len(found) >= limit):
                return found

    def counts(self, *, since: float | None = None, until: float | None = None) -> dict[str, int]:
        """Runs per state that entered it within [since, until] (all, without bounds)."""
        low = "-inf" if since is None else since
        high = "+inf" if until is None else until
        pipe = self.redis.pipeline(transaction=False)
        for state in RunState:
            pipe.zcount(self.keys.by_state(state), low, high)
        return {str(s): int(n) for s, n in zip(RunState, pipe.execute(), strict=True)}

    def _records(self, tokens: list[str]) -> list[RunRecord | None]:
        """Each token's run record (None: it expired since the index was read)."""
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.hgetall(self.keys.run(token))
        return [RunRecord.from_hash(raw) if raw else None for raw in pipe.execute()]
