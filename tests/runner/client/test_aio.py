"""runner.AsyncClient (runner.client.aio): enqueue from asyncio tasks, handles from asyncio,
Sentinel and replicas."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis

from runner import AsyncClient, RunState
from runner.client.aio import async_connect
from runner.config import Settings
from tests.conftest import TEST_TASKS
from tests.runner.client.test_sync import CONCURRENT, runs_of
from tests.sentinels import sentinel_topology


def test_forty_asyncio_tasks_enqueueing_one_token_make_one_run(
    redis: Redis, settings: Settings
) -> None:
    async def main() -> list[bool]:
        client = AsyncClient.from_url(settings.redis_url or "", settings=settings)
        try:
            results = await asyncio.gather(
                *(client.enqueue("greet", {"name": "ada"}) for _ in range(CONCURRENT))
            )
        finally:
            await client.aclose()
        return [r.deduplicated for r in results]

    deduplicated = asyncio.run(main())

    assert deduplicated.count(False) == 1
    assert len(runs_of(redis, "greet")) == 1
    assert redis.llen("rq:queue:default") == 1


def test_a_handle_enqueues_from_asyncio(settings: Settings, redis: Redis) -> None:
    import tests.sample_tasks as tasks

    async def main() -> str:
        client = AsyncClient.from_url(settings.redis_url or "", settings=settings)
        try:
            handle = tasks.greet.with_options(async_client=client)
            enqueued = await handle.enqueue_async(name="ada")
            record = await client.get(enqueued.token)
            assert record is not None
            return record.state
        finally:
            await client.aclose()

    assert asyncio.run(main()) == RunState.QUEUED


@pytest.mark.slow
def test_the_asyncio_client_enqueues_through_sentinel_and_waits_for_a_replica() -> None:
    with sentinel_topology(sentinel_password="s3cret") as topology:
        settings = Settings(redis_url=topology.url, redis_sentinel_password="s3cret",
                            tasks_module=TEST_TASKS)  # fmt: skip
        assert settings.min_replicas == 1

        async def main() -> str:
            client = AsyncClient(async_connect(settings), settings)
            try:
                return (await client.enqueue("greet", {"name": "ada"})).token
            finally:
                await client.aclose()

        token = asyncio.run(main())
        master = topology.master()
        # returned only once a replica had the run: it is there at once
        assert master.client().hget(f"runner:run:{token}", "state") == b"queued"
        assert (
            topology.replica_of(master).client().hget(f"runner:run:{token}", "state") == b"queued"
        )
