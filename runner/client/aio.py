"""The asyncio client: `Client`'s semantics on `redis.asyncio`, for async web apps.

Enqueue is the same one call of the same script (`Enqueuer.call` builds it, from the same
checked requests), with the same replica wait behind Sentinel (`AsyncReplicas`) and the same
outage budget; the URL goes through the same parser (`runner.connections.redis.redis_url`,
Sentinel URLs included). `get` and `wait` read Redis asynchronously; `cancel` and `rerun`, operator
moves of a few round trips, run the sync code in a thread (as history reads will), so their rules
exist once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis
import tenacity

from runner.client.sync import (
    WAIT_POLL_SECONDS,
    Client,
    History,
    TaskRef,
    handle_request,
    unavailable,
)
from runner.config import Settings
from runner.connections.redis import REDIS_DOWN, connect, redis_url
from runner.connections.replicas import AsyncReplicas
from runner.connections.sentinel import is_sentinel_url, parse_sentinel_url
from runner.errors import NotReplicated, UnknownRun
from runner.handles import TaskHandle
from runner.keys import Keys
from runner.record import TERMINAL, Enqueued, RunRecord
from runner.runs.cancel import Cancel
from runner.runs.enqueue import ENQUEUE_RUNS, Request
from runner.runs.rerun import Rerun
from runner.tasks import TaskRegistry


def async_connect(settings: Settings) -> aioredis.Redis:
    """An asyncio client of the configured Redis (connects on first use)."""
    url = redis_url(settings)
    if not is_sentinel_url(url):
        return aioredis.Redis.from_url(url, socket_connect_timeout=5)
    from redis.asyncio.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 5}
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    hosts = list(parsed.sentinels)
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, socket_connect_timeout=5)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(
        parsed.service, db=parsed.db, username=parsed.username, password=parsed.password
    )
    return cast(aioredis.Redis, master)


class AsyncClient:
    """Enqueue, read, wait for, cancel and rerun runs from asyncio code."""

    def __init__(
        self, redis: aioredis.Redis, settings: Settings, *,
        registry: TaskRegistry | None = None, history: History | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        # The sync client checks requests and builds script calls (it connects only for
        # cancel and rerun, in a thread).
        self.sync = Client(connect(settings, check=False), settings, registry=registry,
                           history=history)  # fmt: skip
        self._enqueue = redis.register_script(ENQUEUE_RUNS)
        self._replicas = AsyncReplicas(redis, self.keys, needed=settings.min_replicas)
        self._retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_delay(settings.redis_outage_seconds),
            wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=5),
            retry=tenacity.retry_if_exception_type(REDIS_DOWN), reraise=True,
        )  # fmt: skip

    @classmethod
    def from_env(cls, *, registry: TaskRegistry | None = None) -> AsyncClient:
        settings = Settings.from_env()
        return cls(async_connect(settings), settings, registry=registry)

    @classmethod
    def from_url(
        cls, url: str, *, settings: Settings | None = None, registry: TaskRegistry | None = None
    ) -> AsyncClient:
        settings = (settings or Settings.from_env()).with_changes(redis_url=url)
        return cls(async_connect(settings), settings, registry=registry)

    def request(
        self, task: TaskRef, args: Mapping[str, Any] | None = None, **options: Any
    ) -> Request:
        """A checked request (as `Client.request`); raises InvalidArguments, UnknownTask."""
        return self.sync.request(task, args, **options)

    async def enqueue(
        self, task: TaskRef, args: Mapping[str, Any] | None = None, *, token: str | None = None,
        queue: str | None = None, at: datetime | float | None = None,
        after: timedelta | float | None = None, traceparent: str | None = None,
    ) -> Enqueued:  # fmt: skip
        """As `Client.enqueue`."""
        request = self.sync.request(task, args, token=token, queue=queue, at=at, after=after,
                                    traceparent=traceparent)  # fmt: skip
        return await self.enqueue_request(request)

    async def enqueue_request(self, request: Request) -> Enqueued:
        return (await self.enqueue_many([request]))[0]

    async def enqueue_handle(self, handle: TaskHandle[..., Any], args: dict[str, Any]) -> Enqueued:
        """Enqueue a run of `handle` with its options (`TaskHandle.enqueue_async`)."""
        return await self.enqueue_request(handle_request(handle, args))

    async def enqueue_many(self, requests: Iterable[Request]) -> list[Enqueued]:
        """As `Client.enqueue_many`: one call of the enqueue script for all."""
        requests = list(requests)
        if not requests:
            return []
        call = self.sync._enqueuer.call(requests)
        try:
            replies: list[list[Any]] = await self._retrying(
                self._enqueue_replicated, call.keys, call.args
            )
        except REDIS_DOWN as exc:
            raise unavailable(self.settings, exc) from None
        return call.results(replies)

    async def _enqueue_replicated(self, keys: list[str], args: list[Any]) -> list[list[Any]]:
        replies = cast(list[list[Any]], await self._enqueue(keys=keys, args=args))
        deadline = time.monotonic() + self.settings.redis_outage_seconds
        while True:
            try:
                await self._replicas.confirm()
                return replies
            except NotReplicated:
                if time.monotonic() > deadline:
                    raise

    async def get(self, token: str) -> RunRecord | None:
        """As `Client.get`."""
        try:
            raw: dict[bytes, bytes] = await self._retrying(self._read_run, token)
        except REDIS_DOWN as exc:
            raise unavailable(self.settings, exc) from None
        if raw:
            return RunRecord.from_hash(raw)
        return await asyncio.to_thread(self.sync.history.get, token)

    async def _read_run(self, token: str) -> dict[bytes, bytes]:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.run(token)))
        return raw

    async def wait(self, token: str, *, timeout: float) -> RunRecord:
        """As `Client.wait`: the final run; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pause = WAIT_POLL_SECONDS[0]
        while True:
            record = await self.get(token)
            if record is None:
                raise UnknownRun(f"no run has the token {token!r}")
            if record.state in TERMINAL:
                return record
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {token} is still {record.state} after {timeout:g} s")
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, WAIT_POLL_SECONDS[1])

    async def cancel(self, token: str) -> Cancel:
        """As `Client.cancel` (in a thread)."""
        return await asyncio.to_thread(self.sync.cancel, token)

    async def rerun(self, token: str, *, from_scratch: bool = False) -> Rerun:
        """As `Client.rerun` (in a thread)."""
        return await asyncio.to_thread(self.sync.rerun, token, from_scratch=from_scratch)

    async def aclose(self) -> None:
        await self.redis.aclose()
        self.sync.close()
