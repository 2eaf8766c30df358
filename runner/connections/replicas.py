"""Replicas: waiting until a write reached a replica, so that a failover cannot lose it.

Redis replicates asynchronously: the master acknowledges a write before any replica has it,
and a failover promotes a replica, so the last writes the old master acknowledged may be
gone. Most of the runner's writes may be lost safely (a checkpoint, a step record or a lease
renewal lost is the same as a crash just before it: work is redone, fenced as ever). Two may
not: the claim of a lease (two workers would run the same attempt) and an enqueue (the
caller was told of a run that would not exist). Those wait here for `min_replicas`
replicas, with WAIT: as many as `RUNNER_REDIS_MIN_REPLICAS` (1 behind Sentinel), but never
more than are connected (a failover leaves none until the old master returns as a replica,
and the work must go on meanwhile); Redis's `min-replicas-to-write` counts the same way.

WAIT counts the replicas that have everything *this connection* wrote; the probe write in
the same pipeline makes it cover every write acknowledged before the call, from any
connection (the replication stream is one ordered log).
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from runner.errors import NotReplicated
from runner.keys import Keys

WAIT_MS = 1_000
CONNECTED_REFRESH_SECONDS = 1.0


class Replicas:
    """Confirms that earlier writes reached `needed` replicas (nothing to do when 0)."""

    def __init__(self, redis: Redis, keys: Keys, *, needed: int, wait_ms: int = WAIT_MS) -> None:
        self.redis = redis
        self.key = keys.replication_probe
        self.needed = needed
        self.wait_ms = wait_ms
        self._connected = 0
        self._connected_at = -CONNECTED_REFRESH_SECONDS

    def confirm(self) -> None:
        """Return once `needed` replicas have every write acknowledged before this call;
        raises NotReplicated after `wait_ms` without them, a ConnectionError if the master
        is gone (both are outages to the caller: `runner.connections.redis.Durable` retries
        them)."""
        needed = min(self.needed, self.connected()) if self.needed > 0 else 0
        if needed <= 0:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self.key)
        pipe.wait(needed, self.wait_ms)
        _, acked = pipe.execute()
        self._check(int(acked), needed)

    def connected(self) -> int:
        """How many replicas the master has (asked at most once a second)."""
        if self._stale():
            self._learn(self.redis.info("replication"))
        return self._connected

    def _stale(self) -> bool:
        return time.monotonic() - self._connected_at >= CONNECTED_REFRESH_SECONDS

    def _learn(self, info: dict[str, Any]) -> None:
        self._connected = int(info.get("connected_slaves", 0))
        self._connected_at = time.monotonic()

    def _check(self, acked: int, needed: int) -> None:
        if acked < needed:
            self._connected_at = -CONNECTED_REFRESH_SECONDS  # look again: one may have left
            raise NotReplicated(
                f"{acked} of {needed} Redis replica(s) confirmed the write within"
                f" {self.wait_ms} ms; a failover now could lose it"
            )


class AsyncReplicas(Replicas):
    """`Replicas` on redis.asyncio (the asyncio client's enqueue): the same rules."""

    def __init__(
        self, redis: AsyncRedis, keys: Keys, *, needed: int, wait_ms: int = WAIT_MS
    ) -> None:
        super().__init__(redis, keys, needed=needed, wait_ms=wait_ms)  # type: ignore[arg-type]
        self.aredis = redis

    async def confirm(self) -> None:  # type: ignore[override]
        """As `Replicas.confirm`, awaited."""
        if self.needed <= 0:
            return
        if self._stale():
            self._learn(await self.aredis.info("replication"))
        needed = min(self.needed, self._connected)
        if needed <= 0:
            return
        pipe = self.aredis.pipeline(transaction=False)
        pipe.incr(self.key)
        pipe.wait(needed, self.wait_ms)
        _, acked = await pipe.execute()
        self._check(int(acked), needed)
