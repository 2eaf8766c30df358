"""Retention: removing from Redis what is past the retention window.

Finished runs expire by TTL on their own; pruning catches what slipped through: entries of
the runs index whose run record is gone, and finished runs past retention that have no TTL.
Each run is judged and removed in one Lua call, so a run that is queued, running or retrying
(or that is recreated meanwhile) is never touched.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import texts

CHUNK = 500

# KEYS: runs index, run, steps, log. ARGV: token, cutoff (epoch seconds).
_PRUNE_RUN = """
local state = redis.call('HGET', KEYS[2], 'state')
if not state then
  if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'gone' end
  redis.call('DEL', KEYS[3], KEYS[4])
  return 'orphaned'
end
if state ~= 'succeeded' and state ~= 'failed' then return 'active' end
local at = redis.call('HMGET', KEYS[2], 'finished_at', 'updated_at', 'created_at')
local ended = tonumber(at[1]) or tonumber(at[2]) or tonumber(at[3]) or 0
if ended > tonumber(ARGV[2]) then return 'kept' end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
return 'expired'
"""


def prune_runs(redis: Redis, settings: Settings, *, now: float | None = None) -> dict[str, int]:
    """Remove index entries whose run is gone ('orphaned') and finished runs that ended more
    than `settings.retention_seconds` before `now` with their steps and log ('expired');
    returns those counts and how many runs were 'kept' or 'active'. Raises RedisError."""
    keys = Keys(settings.prefix)
    cutoff = (time.time() if now is None else now) - settings.retention_seconds
    script = redis.register_script(_PRUNE_RUN)
    # ZSCAN may return a member twice; judge each token once.
    tokens = sorted({texts([member])[0] for member, _ in redis.zscan_iter(keys.runs)})
    counts: Counter[str] = Counter({"expired": 0, "orphaned": 0, "kept": 0, "active": 0})
    for start in range(0, len(tokens), CHUNK):
        pipe = redis.pipeline(transaction=False)
        for token in tokens[start : start + CHUNK]:
            run_keys = [keys.runs, keys.run(token), keys.steps(token), keys.log(token)]
            script(keys=run_keys, args=[token, cutoff], client=pipe)
        outcomes: list[Any] = pipe.execute()
        counts.update(texts(outcomes))
    counts.pop("gone", None)
    return dict(counts)
