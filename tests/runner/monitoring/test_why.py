"""`runner why RUN`: each cause produced for real (real Redis, real workers where a worker is
the evidence), and the sentence that names it."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner, Result
from redis import Redis
from rq import Queue
from rq.suspension import resume, suspend

from runner.cli import cli
from runner.client.outbox import outbox_table
from runner.client.sync import Client
from runner.config import Settings
from runner.delivery.dequeue import delivery_key
from runner.keys import Keys
from runner.monitoring.why import MIN_STARTS
from runner.record import Enqueued, RunState
from runner.runs.cancel import cancel
from runner.runs.move import Mover
from runner.runs.transitions import Runs
from tests.conftest import WorkerProcess, wait_for, worker_env


def why_of(invoke: Callable[..., Result], token: str) -> dict[str, object]:
    done = invoke("why", token, "--json")
    assert done.exit_code == 0, done.output
    found: dict[str, object] = json.loads(done.output)
    return found


def test_a_run_on_a_queue_no_worker_serves_says_how_to_start_one(
    enqueue: Callable[..., Enqueued], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    found = why_of(invoke, token)
    assert found["cause"] == "no-worker"
    assert "runner worker --queue default" in str(found["sentence"])
    text = invoke("why", token[:12])
    assert text.exit_code == 0 and text.output.startswith(f"{token}: queued on 'default'")


def test_a_scheduled_run_says_when_it_is_due(
    redis: Redis, settings: Settings, invoke: Callable[..., Result],
) -> None:  # fmt: skip
    token = Client(redis, settings).enqueue("greet", {"name": "ada"}, after=600).token
    found = why_of(invoke, token)
    assert found["cause"] == "scheduled" and "in 9m" in str(found["sentence"])
    assert isinstance(found["starts_in"], float) and 590 < found["starts_in"] <= 600


def test_a_retrying_run_names_the_error_and_the_next_attempt(
    enqueue: Callable[..., Enqueued], work: Callable[[], None], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    token = enqueue("flaky", failures=2).token
    work()  # attempt 1 fails: the run waits for its retry
    found = why_of(invoke, token)
    assert found["cause"] == "retrying", found
    sentence = str(found["sentence"])
    assert "attempt 1 of" in sentence and "failed (" in sentence and "next is due at" in sentence


def test_ended_runs_say_what_to_do_and_when_they_move(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis,
    settings: Settings, invoke: Callable[..., Result],
) -> None:  # fmt: skip
    ok = enqueue("greet", name="ada").token
    bad = enqueue("broken").token
    stopped = enqueue("greet", name="bob").token
    cancel(redis, settings, stopped, origin="cli")
    drain()
    assert "moves to history in" in str(why_of(invoke, ok)["sentence"])
    failed = why_of(invoke, bad)
    assert failed["cause"] == "failed" and f"runner rerun {bad}" in str(failed["sentence"])
    assert why_of(invoke, stopped)["cause"] == "cancelled"
    Mover(redis, replace(settings, history_delay_seconds=0.0)).move_once()
    assert str(why_of(invoke, ok)["sentence"]).endswith("(in history)")


def test_queued_behind_jobs_on_a_busy_worker_with_an_estimate_then_its_worker_lost(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis,
    settings: Settings, start_worker: Callable[..., WorkerProcess],
    invoke: Callable[..., Result],
) -> None:  # fmt: skip
    for i in range(MIN_STARTS):  # the last hour's starts on the queue give the rate
        enqueue("greet", name=f"warm-{i}")
    drain()
    long = enqueue("sleepy", seconds=60).token
    waiting = [enqueue("greet", name=f"w{i}").token for i in range(3)]
    worker = start_worker()
    runs = Runs(redis, settings)
    wait_for(lambda: (r := runs.get(long)) is not None and r.state == RunState.RUNNING,
             timeout=30, what="the long run to start")  # fmt: skip

    running = why_of(invoke, long)
    assert running["cause"] == "running" and "lease is renewed" in str(running["sentence"])
    third = why_of(invoke, waiting[2])
    sentence = str(third["sentence"])
    assert third["cause"] == "queued" and "behind 2 jobs on 'default'" in sentence, sentence
    assert "1 busy" in sentence and "it starts in ~" in sentence
    assert isinstance(third["starts_in"], float) and third["starts_in"] > 0
    first = why_of(invoke, waiting[0])
    assert "behind 0 jobs" in str(first["sentence"])

    os.killpg(worker.process.pid, signal.SIGKILL)  # the whole worker: no reaper is left
    worker.process.wait(timeout=10)
    wait_for(lambda: not redis.exists(Keys(settings.prefix).lease(long)),
             timeout=settings.lease_seconds * 3, what="the lease to expire")  # fmt: skip
    lost = why_of(invoke, long)
    assert lost["cause"] == "worker-lost" and "stopped beating" in str(lost["sentence"])


def test_a_job_taken_from_its_queue_by_a_worker_that_died_is_said_taken(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings,
    invoke: Callable[..., Result],
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    queue = Queue.redis_queue_namespace_prefix + "default"
    redis.lmove(queue, delivery_key("default"), "LEFT", "RIGHT")  # as a dequeue moves it
    found = why_of(invoke, token)
    assert found["cause"] == "taken" and "not alive any more" in str(found["sentence"])
    redis.lpop(delivery_key("default"))  # gone from both lists: lost on the way
    assert why_of(invoke, token)["cause"] == "lost"


def test_suspended_workers_are_named_with_since_when(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings,
    start_worker: Callable[..., WorkerProcess], invoke: Callable[..., Result],
) -> None:  # fmt: skip
    start_worker()
    suspend(redis)
    token = enqueue("greet", name="ada").token
    since = Keys(settings.prefix).suspended_since
    wait_for(lambda: redis.exists(since), timeout=30, what="a horse to see the suspension")
    found = why_of(invoke, token)
    assert found["cause"] == "suspended"
    assert " since 20" in str(found["sentence"]) and "rq resume" in str(found["sentence"])
    resume(redis)
    wait_for(lambda: not redis.exists(since), timeout=30, what="the horse to resume")
    wait_for(lambda: why_of(invoke, token)["cause"] == "succeeded", timeout=30,
             what="the run to go through once resumed")  # fmt: skip


def test_the_console_run_page_says_why(
    enqueue: Callable[..., Enqueued], redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    from fastapi.testclient import TestClient

    from runner.web.app import create_app

    token = enqueue("greet", name="<b>ada</b>", token="why-<i>page</i>").token
    with TestClient(create_app(settings, redis=redis), base_url="http://127.0.0.1:8080") as web:
        page = web.get(f"/runs/{token}")
    assert page.status_code == 200
    assert (
        '<p class="why" id="why"><b>Why:</b> queued on &#39;default&#39;, which no live'
        in page.text
    )
    assert "<i>page</i>" not in page.text


def test_a_run_waiting_for_its_limit_names_the_key_the_limit_and_its_holders(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings,
    invoke: Callable[..., Result],
) -> None:  # fmt: skip
    made = [enqueue("limited", host="feeds.example", seconds=i) for i in range(3)]
    for run in made:  # three horses take them: two begin, the third waits for a slot
        redis.lrem(Queue("default", connection=redis).key, 1, run.job_id)
        runs.begin(run.token, 1, holder=f"{run.job_id}.h", worker="w", version="v",
                   delivery=delivery_key("default"), job_id=run.job_id)  # fmt: skip
    found = why_of(invoke, made[2].token)
    holders = ", ".join(sorted(r.token for r in made[:2]))
    assert found["cause"] == "limited"
    assert found["sentence"] == (
        f"waiting for limit limited:feeds.example (2 at once): held by {holders}; 1st of 1"
        " waiting; it goes back to its queue when a slot frees (a holder ends, or its lease"
        " expires)"
    )
    # and the run's page and `runner show` say the same, with the limit itself (escaped)
    from fastapi.testclient import TestClient

    from runner.web.app import create_app

    with TestClient(create_app(settings, redis=redis), base_url="http://127.0.0.1:8080") as web:
        page = web.get(f"/runs/{made[2].token}").text
    assert "<b>Why:</b> waiting for limit limited:feeds.example (2 at once): held by" in page
    assert '<td id="limit">limited:feeds.example (2 at once)</td>' in page
    shown = invoke("show", made[2].token).output
    assert "limit:      limited:feeds.example (2 at once)" in shown


def test_a_run_still_in_the_outbox_says_it_waits_for_the_relay_or_why_it_is_kept(
    redis: Redis, settings: Settings, tmp_path: Path,
) -> None:  # fmt: skip
    url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = sa.create_engine(url)
    outbox_table(sa.MetaData()).create(engine)
    with engine.begin() as connection:  # committed by the site, no relay running
        token = Client(redis, settings).enqueue_on_commit(connection, "greet", {"name": "ada"})
    env = {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}

    def why_text() -> str:
        done = CliRunner().invoke(cli, ["why", token], env={**env, "RUNNER_OUTBOX_URL": url})
        assert done.exit_code == 0, done.output
        return done.output

    assert why_text().startswith(f"{token}: committed to the outbox at ")
    assert "not relayed yet (1 row wait): the relay process of a live worker enqueues it" in (
        why_text()
    )
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE runner_outbox SET error = 'unknown task greet'"))
    assert "kept there by the relay: unknown task greet; fix the task, or delete" in why_text()
    unknown = CliRunner().invoke(cli, ["why", "nosuchrun"], env={**env, "RUNNER_OUTBOX_URL": url})
    assert unknown.exit_code != 0 and "no run matches 'nosuchrun'" in unknown.output
