"""runner.Client and runner.AsyncClient: enqueue (dedup under concurrency, arguments checked
first, Redis down), get, wait, cancel, rerun, typed handles."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis

from runner import Client, InvalidArguments, RunnerError, RunState
from runner.config import Settings
from runner.errors import RedisUnavailable, UnknownTask

CONCURRENT = 40


@pytest.fixture
def client(redis: Redis, settings: Settings) -> Client:
    return Client(redis, settings)


def runs_of(redis: Redis, task: str) -> list[bytes]:
    """Every run a task has (its index), and every RQ job in the default queue."""
    return list(redis.zrange(f"runner:runs:task:{task}", 0, -1))


def test_forty_threads_enqueueing_one_token_make_one_run(redis: Redis, settings: Settings) -> None:
    clients = [Client(Redis.from_url(settings.redis_url or ""), settings) for _ in range(8)]
    start = threading.Barrier(CONCURRENT)
    results = []

    def one(i: int) -> None:
        start.wait()
        results.append(clients[i % 8].enqueue("greet", {"name": "ada"}, token="greet-ada"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == CONCURRENT
    assert sum(not r.deduplicated for r in results) == 1
    assert runs_of(redis, "greet") == [b"greet-ada"]
    assert redis.llen("rq:queue:default") == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({}, "task greet needs argument 'name'"),
        ({"name": "ada", "shout": True}, "task greet has no argument 'shout'"),
        ({"name": {1, 2}}, "arguments must be JSON values"),
        (["ada"], "arguments must be a dict"),
    ],
)
def test_arguments_are_checked_before_anything_is_queued(
    client: Client, redis: Redis, args: object, reason: str
) -> None:
    with pytest.raises(InvalidArguments, match=reason):
        client.enqueue("greet", args)  # type: ignore[arg-type]
    assert redis.dbsize() == 0


def test_an_unknown_task_is_refused_naming_the_known_ones(client: Client) -> None:
    with pytest.raises(UnknownTask, match=r"unknown task 'gret'; known tasks: .*greet"):
        client.enqueue("gret", {"name": "ada"})


def test_redis_down_raises_a_runner_error_after_the_configured_retry(
    settings: Settings, tmp_path: Path
) -> None:
    down = replace(settings, redis_url=f"unix://{tmp_path}/none.sock", redis_outage_seconds=0.3)
    client = Client.from_url(down.redis_url or "", settings=down)

    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis at unix://.* after 0.3 s"):
        client.enqueue("greet", {"name": "ada"})
    assert issubclass(RedisUnavailable, RunnerError)


def test_wait_returns_the_final_run_and_times_out_on_a_live_one(
    client: Client, work: Callable[[], None]
) -> None:
    token = client.enqueue("greet", {"name": "ada", "loud": True}).token
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(token, timeout=0.05)

    work()
    record = client.wait(token, timeout=10)

    assert (record.state, record.result) == (RunState.SUCCEEDED, "ADA")
    assert client.get("no-such-token") is None


def test_cancel_and_rerun_through_the_client(client: Client) -> None:
    token = client.enqueue("greet", {"name": "ada"}).token

    assert client.cancel(token).state == RunState.CANCELLED
    assert client.wait(token, timeout=1).state == RunState.CANCELLED
    assert client.rerun(token).action == "requeued"
    record = client.get(token)
    assert record is not None and (record.state, record.attempt) == (RunState.QUEUED, 2)


def test_enqueue_many_is_one_call_for_many_runs(client: Client, redis: Redis) -> None:
    requests = [client.request("greet", {"name": n}) for n in ("ada", "bob", "ada")]
    client.enqueue("noop")  # the script loaded (a first EVALSHA finds it missing)
    redis.config_resetstat()

    done = client.enqueue_many(requests)

    assert [e.deduplicated for e in done] == [False, False, True]
    assert int(redis.info("commandstats")["cmdstat_evalsha"]["calls"]) == 1
    assert len(runs_of(redis, "greet")) == 2
