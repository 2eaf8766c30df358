"""Limits per key: at most N leases of one key at once across every worker, at most N starts
of it in any period (a task's `Limit`, runner.tasks).

A limited run carries its key and numbers in its record (written at enqueue). Its claim
(BEGIN_ATTEMPT) counts the key's holders, the tokens in `limit:holders:KEY` whose lease still
exists (a dead holder's slot frees with its lease, nothing else to clean), and its starts in
the last period (`limit:starts:KEY`). Over the limit, the run does not begin: it waits in the
key's wait set (`limit:waiting:KEY`, by when it began waiting), its RQ job hash put aside
(`limit:job:ID`), holding no worker. That is a fourth place a queued run can be, beside its
queue, the intermediate list and a lease (runner.delivery.dequeue), and it is watched too:

- an attempt that ends (RELEASE_ATTEMPT) wakes the first waiters its slot lets through;
- the reaper wakes the waiters of every key with room (`Limits.wake_all`), for the slots that
  freed otherwise: a lease that expired, a handover, a rate's window that moved on;
- the reaper's search for lost runs leaves a waiting run alone (`Limits.parked`).

Waking puts the job back at the head of its queue, and reserves the slot for a lease period
(`limit:woken:KEY`), so that a slot is not handed to two waiters. The keys are built inside the
scripts from the runner's prefix: a limit's runs are known only from their records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job

from runner.config import Settings
from runner.connections.lua import registered
from runner.keys import Keys
from runner.record import RunRecord, texts

# The Lua functions of a key's limit, shared by BEGIN_ATTEMPT, RELEASE_ATTEMPT and WAKE.
# `prefix` is the runner's `limit:` prefix, `lease_prefix` its `lease:` one.
LIMITS = (
    f"local JOB_PREFIX, QUEUE_PREFIX = '{Job.redis_job_namespace_prefix}', "
    f"'{Queue.redis_queue_namespace_prefix}'  -- RQ's job and queue key prefixes"
    + """
local function limit_part(prefix, part, key) return prefix .. part .. ':' .. key end
-- the tokens holding a lease of `key` (but `except`), forgetting those whose lease is gone
local function limit_holders(prefix, lease_prefix, key, except)
  local holders, live = limit_part(prefix, 'holders', key), {}
  for _, t in ipairs(redis.call('SMEMBERS', holders)) do
    if t ~= except then
      if redis.call('EXISTS', lease_prefix .. t) == 1 then table.insert(live, t)
      else redis.call('SREM', holders, t) end
    end
  end
  return live
end
-- how many more runs of `key` may start now: its concurrency less the live holders, its rate
-- less the starts of the last `per` seconds, both less the waiters woken and not yet begun
local function limit_room(prefix, lease_prefix, key, conc, rate, per, now, except)
  local woken = limit_part(prefix, 'woken', key)
  redis.call('ZREMRANGEBYSCORE', woken, '-inf', now)  -- reservations past their deadline
  if except then redis.call('ZREM', woken, except) end
  local pending = redis.call('ZCARD', woken)
  local room = math.huge
  if conc > 0 then room = conc - #limit_holders(prefix, lease_prefix, key, except) - pending end
  if rate > 0 then
    local starts = limit_part(prefix, 'starts', key)
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - per)
    room = math.min(room, rate - redis.call('ZCARD', starts) - pending)
  end
  return room
end
-- an attempt of `token` begins under `key`: it holds a slot while its lease lives
local function limit_take(prefix, key, token, holder, per, now, hold_seconds)
  local holders, starts = limit_part(prefix, 'holders', key), limit_part(prefix, 'starts', key)
  redis.call('SADD', holders, token)
  if redis.call('TTL', holders) < hold_seconds then redis.call('EXPIRE', holders, hold_seconds) end
  redis.call('ZADD', starts, now, holder)
  redis.call('EXPIRE', starts, math.ceil(per) + 1)
end
-- the run waits for a slot of `key`, its RQ job hash put aside, in the keys with waiters
local function limit_park(prefix, key, token, job_key, job_id, now)
  redis.call('ZADD', limit_part(prefix, 'waiting', key), 'NX', now, token)
  if redis.call('EXISTS', job_key) == 1 then
    redis.call('RENAME', job_key, limit_part(prefix, 'job', job_id))
  end
  redis.call('SADD', prefix .. 'keys', key)
end
-- wake the first waiters of `key` that its room lets through (`released`: a holder that has
-- just ended): each job back at the head of its queue, its slot reserved for `lease_ms`
local function limit_wake(prefix, lease_prefix, run_prefix, key, now, lease_ms, released)
  if released ~= '' then redis.call('SREM', limit_part(prefix, 'holders', key), released) end
  local waiting, woke = limit_part(prefix, 'waiting', key), 0
  while true do
    local first = redis.call('ZRANGE', waiting, 0, 0)[1]
    if not first then redis.call('SREM', prefix .. 'keys', key); return woke end
    local f = redis.call('HMGET', run_prefix .. first, 'state', 'job_id', 'queue',
                         'limit_concurrency', 'limit_rate', 'limit_per')
    local parked = limit_part(prefix, 'job', f[2] or '')
    if f[1] ~= 'queued' or redis.call('EXISTS', parked) == 0 then
      -- ended meanwhile (cancelled), or its job is gone: the reaper's search for lost runs
      -- gives it its next attempt
      redis.call('ZREM', waiting, first)
      redis.call('DEL', parked)
    else
      local room = limit_room(prefix, lease_prefix, key, tonumber(f[4]) or 0,
                              tonumber(f[5]) or 0, tonumber(f[6]) or 0, now, nil)
      if room < 1 then return woke end
      redis.call('ZREM', waiting, first)
      redis.call('RENAME', parked, JOB_PREFIX .. f[2])
      redis.call('HSET', JOB_PREFIX .. f[2], 'status', 'queued')
      redis.call('LPUSH', QUEUE_PREFIX .. f[3], f[2])
      redis.call('ZADD', limit_part(prefix, 'woken', key), now + lease_ms / 1000, first)
      woke = woke + 1
    end
  end
end
"""
)

# The reaper's wake of one key's waiters; returns how many it woke.
WAKE = (
    LIMITS
    + """
local prefix = ARGV[1]        -- the runner's limit: prefix
local lease_prefix = ARGV[2]  -- its lease: prefix
local run_prefix = ARGV[3]    -- its run: prefix
local key = ARGV[4]           -- the limit's key
local now = tonumber(ARGV[5]) -- epoch seconds
local lease_ms = tonumber(ARGV[6])
return limit_wake(prefix, lease_prefix, run_prefix, key, now, lease_ms, '')
"""
)


def limit_text(record: RunRecord) -> str:
    """A run's limit in words: 'KEY (2 at once, 5 per 10s)'."""
    bounds = []
    if record.limit_concurrency:
        bounds.append(f"{record.limit_concurrency} at once")
    if record.limit_rate:
        bounds.append(f"{record.limit_rate} per {record.limit_per:g}s")
    return f"{record.limit_key} ({', '.join(bounds)})"


@dataclass(frozen=True, slots=True)
class Held:
    """What holds a waiting run back: its key, the key's numbers, the runs holding it, the
    starts in the last period, and how many runs wait."""

    key: str
    concurrency: int
    rate: int
    per: float
    holders: tuple[str, ...]
    recent_starts: int
    waiting: int
    position: int  # 1: the first to be woken


def script_prefixes(keys: Keys) -> list[str]:
    """The prefixes `LIMITS` builds its keys from: the limits', the leases', the runs'."""
    return [keys.limit_prefix, keys.lease(""), keys.run("")]


class Limits:
    """The limits' state in Redis: who holds and who waits, and the reaper's wake."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._wake = registered(redis, WAKE)

    def wake_all(self, now: float) -> int:
        """Wake the waiters every key with waiters has room for; how many were woken."""
        woke = 0
        for key in texts(self.redis.smembers(self.keys.limit_keys)):
            args: list[Any] = [*script_prefixes(self.keys), key, now, self.settings.lease_ms]
            woke += int(self._wake(args=args))
        return woke

    def parked(self, records: Sequence[RunRecord]) -> set[str]:
        """The tokens of `records` waiting for a slot of their key (their RQ job put aside):
        not lost, whatever their queue holds."""
        limited = [r for r in records if r.limit_key]
        if not limited:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for record in limited:
            pipe.exists(self.keys.limit("job", record.job_id))
        return {r.token for r, up in zip(limited, pipe.execute(), strict=True) if up}

    def held(self, record: RunRecord, now: float) -> Held | None:
        """What holds `record` back, when it waits for a slot of its key; else None."""
        if not record.limit_key:
            return None
        key = record.limit_key
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrank(self.keys.limit("waiting", key), record.token)
        pipe.zcard(self.keys.limit("waiting", key))
        pipe.smembers(self.keys.limit("holders", key))
        pipe.zcount(self.keys.limit("starts", key), f"({now - record.limit_per}", "+inf")
        rank, waiting, members, starts = pipe.execute()
        if rank is None:
            return None
        tokens = sorted(texts(members))
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.exists(self.keys.lease(token))
        holders = tuple(t for t, up in zip(tokens, pipe.execute(), strict=True) if up)
        return Held(
            key, record.limit_concurrency, record.limit_rate, record.limit_per, holders,
            int(starts), int(waiting), int(rank) + 1,
        )  # fmt: skip
