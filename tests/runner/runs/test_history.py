"""The history move: finished runs leave Redis for the history tables, a marker keeps their
token deduplicated, readers find them there (SQLite, and PostgreSQL when
RUNNER_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from click.testing import Result
from redis import Redis

from runner.client.sync import Client
from runner.keys import Keys
from runner.record import Enqueued, RunState
from runner.runs.move import Mover


def test_the_cli_shows_and_lists_a_moved_run(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    drain()
    mover.move_once()
    if mover.settings.history_url:
        monkeypatch.setenv("RUNNER_HISTORY_URL", mover.settings.history_url)
    shown = invoke("show", token)
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.output and "greet" in shown.output
    listed = invoke("runs", "--json")
    assert token in listed.output
    logged = invoke("logs", token, "--json")
    assert logged.exit_code == 0 and "run.succeeded" in logged.output


def test_a_rerun_of_a_moved_failed_run_brings_it_back_with_its_checkpoints(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from runner.runs.rerun import RerunAction, rerun
    from runner.runs.transitions import Runs

    token = enqueue("broken").token
    drain()
    s = replace(mover.settings, failed_seconds=0)
    Mover(redis, s, store=mover.store).move_once()
    assert not redis.exists(Keys(s.prefix).run(token))
    assert rerun(redis, s, token, dry_run=True).action == RerunAction.WOULD_REQUEUE
    assert not redis.exists(Keys(s.prefix).run(token)), "a dry run writes nothing"
    done = rerun(redis, s, token)
    assert (done.action, done.state) == (RerunAction.REQUEUED, "queued")
    runs = Runs(redis, s)
    back = runs.get(token)
    assert back is not None and back.attempt == 2
    assert "first" in runs.steps(token), "its finished steps came back"
    assert not redis.exists(Keys(s.prefix).done(token))
    drain()
    assert Mover(redis, s, store=mover.store).move_once() == 1
    moved = mover.store.get(token)
    assert moved is not None and (moved.state, moved.attempt) == (RunState.FAILED, 2)
    assert mover.store.generations(token) == [0], "the same run, copied over its first copy"


def test_the_console_lists_and_shows_a_moved_run(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from fastapi.testclient import TestClient

    from runner.web.app import create_app

    token = enqueue("greet", name="ada").token
    drain()
    mover.move_once()
    app = create_app(mover.settings, redis=redis)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        listed = client.get("/runs")
        assert listed.status_code == 200 and token in listed.text
        shown = client.get(f"/runs/{token}")
        assert shown.status_code == 200
        assert "succeeded" in shown.text and "run.succeeded" in shown.text


def test_health_says_how_many_runs_wait_to_move(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    import time

    from runner.monitoring.health import check_health

    enqueue("greet", name="ada")
    drain()
    later = time.time() + 600  # the mover has been behind for ten minutes

    def waiting() -> object:
        up = check_health(redis, mover.settings, now=later).up
        return up.figures["history_waiting"]

    assert waiting() == 1
    mover.move_once()
    assert waiting() == 0


def test_history_past_its_retention_is_pruned(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    import time

    old, new = enqueue("greet", name="old").token, enqueue("greet", name="new").token
    drain()
    mover.move_once()
    assert mover.prune_once() == 0  # within RUNNER_HISTORY_DAYS
    moved = mover.store.get(new)
    assert moved is not None and moved.finished_at is not None
    days = replace(mover.settings, history_seconds=0)
    pruner = Mover(mover.redis, days, store=mover.store)
    assert pruner.prune_once(now=time.time() + 1) == 2
    assert mover.store.get(old) is None and mover.store.get(new) is None
    assert mover.store.events(old) == []


def test_forty_concurrent_enqueues_of_a_moved_token_are_deduplicated(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    first = enqueue("greet", token="feed-42", name="ada")
    drain()
    assert mover.move_once() == 1
    with ThreadPoolExecutor(max_workers=40) as pool:
        again = list(pool.map(lambda _: enqueue("greet", token="feed-42", name="ada"), range(40)))
    assert all(e.deduplicated and e.state == "succeeded" for e in again)
    assert {e.job_id for e in again} == {first.job_id}
    assert not redis.exists(Keys(mover.settings.prefix).run("feed-42"))


def test_rq_requeue_works_on_a_failed_run_within_the_failed_window(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    run = enqueue("counting", token="c", items=5, seconds=0.0)
    redis.set("probe:fail:c", 3)
    drain()
    redis.delete("probe:fail:c")
    assert mover.move_once() == 0  # failed: it stays for RUNNER_FAILED_DAYS
    FailedJobRegistry("default", connection=redis, serializer=JSONSerializer).requeue(run.job_id)
    drain()
    done = Client(redis, mover.settings).get("c")
    assert done is not None and (done.state, done.attempt) == (RunState.SUCCEEDED, 2)
    assert mover.move_once() == 1


def test_a_moved_failed_run_rerun_resumes_from_its_checkpoint(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    from runner.runs.rerun import rerun

    enqueue("counting", token="c", items=5, seconds=0.0)
    redis.set("probe:fail:c", 3)
    drain()
    redis.delete("probe:fail:c")
    s = replace(mover.settings, failed_seconds=0)
    assert Mover(redis, s, store=mover.store).move_once() == 1
    assert rerun(redis, s, "c").state == "queued"
    drain()
    items = [e.decode().split(":")[0] for e in redis.lrange("probe:exec:c", 0, -1)]
    assert items == ["item0", "item1", "item2", "item3", "item3", "item4"]
    done = Client(redis, s).get("c")
    assert done is not None and done.state == RunState.SUCCEEDED


def test_a_token_enqueued_after_its_marker_expired_is_a_new_generation_in_history(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    enqueue("greet", token="t1", name="first")
    drain()
    mover.move_once()
    redis.delete(Keys(mover.settings.prefix).done("t1"))  # the dedup window ended
    assert not enqueue("greet", token="t1", name="second").deduplicated
    drain()
    assert mover.move_once() == 1
    assert mover.store.generations("t1") == [1, 0]
    newest = mover.store.get("t1")
    assert newest is not None and newest.result == "second"
    if mover.settings.history_url:
        monkeypatch.setenv("RUNNER_HISTORY_URL", mover.settings.history_url)
    shown = invoke("show", "t1")
    assert "second" in shown.output and "older runs of this token: 1" in shown.output
