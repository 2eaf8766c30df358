"""The run record in Redis: reading it, and the lease that fences every write of progress."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from redis import Redis

from runner.errors import LeaseLost, UnknownRun
from runner.keys import Keys
from runner.record import ACTIVE, TERMINAL, RunRecord, encode, texts

__all__ = ["ACTIVE", "TERMINAL", "RunRecord", "Runs", "encode", "texts"]


# Appends ARGV[from..#ARGV] (JSON events) to the stream KEYS[log], capped at ARGV[cap].
_XADD_REST = """
local function log_events(log, cap, from)
  for i = from, #ARGV do redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'e', ARGV[i]) end
end
"""

# Claim the token for an attempt and read the run and its finished steps, in one call; the
# job id leaves its intermediate list here, so a delivery is always in that list or leased.
# KEYS: run, lease, running-set, steps, intermediate list. ARGV: attempt, holder, lease ms,
# now, worker, token, version. Returns {status, run pairs, step pairs}; status 'ok' or why
# the body must not run.
_BEGIN = """
redis.call('LREM', KEYS[5], 1, ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', {}, {}} end
local st = redis.call('HMGET', KEYS[1], 'state', 'attempt')
local status = 'ok'
if tonumber(st[2]) ~= tonumber(ARGV[1]) then status = 'stale'
elseif st[1] ~= 'queued' then status = st[1]
elseif not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then status = 'leased'
else
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[4], 'updated_at', ARGV[4],
             'worker', ARGV[5], 'job_id', ARGV[2], 'code_version', ARGV[7])
  redis.call('SADD', KEYS[3], ARGV[6])
end
return {status, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[4])}
"""

# KEYS: lease. ARGV: holder, lease ms.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS: lease, run, steps, log. ARGV: holder, log cap, n run pairs, pairs..., n step pairs,
# pairs..., then events for the log.
_FENCED_WRITE = (
    _XADD_REST
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a, n = 4, tonumber(ARGV[3])
if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, a, a + 2*n - 1)) end
a = a + 2*n
n = tonumber(ARGV[a])
if n > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, a + 1, a + 2*n)) end
log_events(KEYS[4], ARGV[2], a + 1 + 2*n)
return 1
"""
)

# KEYS: lease, run, running, delayed, steps, log. ARGV: holder, token, retention s, retry_at
# ('' unless retrying), log cap, n run pairs, pairs... (state among them), then events.
_RELEASE = (
    _XADD_REST
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
local n = tonumber(ARGV[6])
redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + 2*n))
log_events(KEYS[6], ARGV[5], 7 + 2*n)
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
else
  for _, i in ipairs({2, 5, 6}) do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
return 1
"""
)


class Runs:
    """Reads run records and performs the lease-fenced writes of one attempt's progress."""

    def __init__(
        self, redis: Redis, keys: Keys, *, lease_ms: int = 30_000, log_cap: int = 2_000
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_ms = lease_ms
        self.log_cap = log_cap
        self._begin = redis.register_script(_BEGIN)
        self._renew = redis.register_script(_RENEW)
        self._write = redis.register_script(_FENCED_WRITE)
        self._release = redis.register_script(_RELEASE)

    def get(self, token: str) -> RunRecord | None:
        raw = self.redis.hgetall(self.keys.run(token))
        return RunRecord.from_hash(raw) if raw else None  # type: ignore[arg-type]

    def steps(self, token: str) -> dict[str, Any]:
        """Finished steps in the order they finished: name -> {result, attempt, seconds, ...}."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.steps(token))  # type: ignore[assignment]
        steps = {k.decode(): json.loads(v) for k, v in raw.items()}
        return dict(sorted(steps.items(), key=lambda item: item[1].get("finished_at", 0)))

    def resolve(self, ref: str) -> str:
        """A token from a token, an RQ job id or an unambiguous token prefix; raises UnknownRun."""
        if self.redis.exists(self.keys.run(ref)):
            return ref
        by_job = self.redis.get(self.keys.job(ref))
        if by_job:
            return texts([by_job])[0]
        pattern = ref.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "*"
        found = texts([m for m, _ in self.redis.zscan_iter(self.keys.runs, pattern)])
        matches = sorted(m for m in set(found) if self.redis.exists(self.keys.run(m)))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownRun(f"no run matches {ref!r}; `runner runs` lists them")
        raise UnknownRun(f"{ref!r} matches {len(matches)} runs ({', '.join(matches[:3])}, ...)")

    def list(
        self,
        *,
        state: str | None = None,
        task: str | None = None,
        since: float | None = None,
        limit: int = 0,
    ) -> list[RunRecord]:
        """Runs newest first, filtered by state, task and creation time; at most `limit` (0: all).
        Reads the index page by page, so a short listing of a long history stays cheap."""
        found: list[RunRecord] = []
        start, page = 0, 500
        while True:
            tokens = texts(
                self.redis.zrevrangebyscore(
                    self.keys.runs, "+inf", since or "-inf", start=start, num=page
                )
            )
            pipe = self.redis.pipeline(transaction=False)
            for token in tokens:
                pipe.hgetall(self.keys.run(token))
            for raw in pipe.execute():
                run = RunRecord.from_hash(raw) if raw else None
                if run and (not state or run.state == state) and (not task or run.task == task):
                    found.append(run)
                    if limit and len(found) >= limit:
                        return found
            if len(tokens) < page:
                return found
            start += page

    def leaseless(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(tokens marked running, those of them whose lease is gone: their worker died)."""
        running = texts(self.redis.smembers(self.keys.running))
        pipe = self.redis.pipeline(transaction=False)
        for token in running:
            pipe.exists(self.keys.lease(token))
        alive = pipe.execute()
        return tuple(running), tuple(t for t, up in zip(running, alive, strict=True) if not up)

    # Fenced writes: each checks that `holder` (the attempt's job id) still holds the lease.

    def begin(
        self, token: str, attempt: int, *, holder: str, worker: str, version: str,
        delivery: str | None = None,
    ) -> tuple[str, RunRecord | None, dict[str, Any]]:  # fmt: skip
        """Claim the token for `attempt` and read its run and finished steps, atomically, and
        take job `holder` out of the intermediate list `delivery` (see runner.delivery).
        The status is 'ok', or why the body must not run ('stale', 'running', 'succeeded',
        'leased', 'missing', ...): a duplicate or stale delivery never runs the body twice."""
        keys = [self.keys.run(token), self.keys.lease(token), self.keys.running]
        keys += [self.keys.steps(token), delivery or self.keys.no_delivery]
        args: list[Any] = [attempt, holder, self.lease_ms, time.time(), worker, token, version]
        status, run, steps = cast(list[Any], self._begin(keys=keys, args=args))
        record = RunRecord.from_hash(_pairs(run)) if run else None
        decoded = {k.decode(): json.loads(v) for k, v in _pairs(steps).items()}
        return texts([status])[0], record, decoded

    def renew(self, token: str, holder: str) -> bool:
        """Extend the lease; False when it was lost (expired or taken over)."""
        return bool(self._renew(keys=[self.keys.lease(token)], args=[holder, self.lease_ms]))

    def write(
        self,
        token: str,
        holder: str,
        fields: Mapping[str, Any],
        *,
        step: tuple[str, Any] | None = None,
        events: Sequence[str] = (),
    ) -> None:
        """Write fields (and a finished step, and log events) if `holder` holds the lease;
        raises LeaseLost (then nothing is written)."""
        run_args = encode({**fields, "updated_at": time.time()})
        step_args = [step[0], json.dumps(step[1], separators=(",", ":"))] if step else []
        keys = [self.keys.lease(token), self.keys.run(token), self.keys.steps(token)]
        keys.append(self.keys.log(token))
        args: list[Any] = [holder, self.log_cap, len(run_args) // 2, *run_args]
        args += [len(step_args) // 2, *step_args, *events]
        if not self._write(keys=keys, args=args):
            raise LeaseLost(f"attempt {holder} lost the lease of {token}; another attempt owns it")

    def release(
        self,
        token: str,
        holder: str,
        fields: Mapping[str, Any],
        *,
        retention: int,
        retry_at: float | None = None,
        events: Sequence[str] = (),
    ) -> None:
        """End the attempt: write its outcome and events, drop the lease; a terminal run
        starts expiring. Raises LeaseLost (then nothing is written)."""
        keys = [
            self.keys.lease(token), self.keys.run(token), self.keys.running,
            self.keys.delayed, self.keys.steps(token), self.keys.log(token),
        ]  # fmt: skip
        flat = encode({**fields, "updated_at": time.time()})
        retry = "" if retry_at is None else retry_at
        args = [holder, token, retention, retry, self.log_cap, len(flat) // 2, *flat, *events]
        if not self._release(keys=keys, args=args):
            raise LeaseLost(f"attempt {holder} lost the lease of {token}; its outcome is dropped")


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """HGETALL as Lua returns it (a flat list) to a mapping."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))
