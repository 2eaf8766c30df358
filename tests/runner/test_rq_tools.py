"""What RQ's own tools see: a run's final failure is a failed job in RQ's terms, and RQ's
requeue of it is a rerun from the checkpoint (a new attempt of the same run)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueued
from runner.runs.rerun import RerunAction, rerun
from runner.runs.transitions import Runs
from runner.worker.reaper import Reaper


def failed_registry(redis: Redis) -> FailedJobRegistry:
    return FailedJobRegistry("default", connection=redis, serializer=JSONSerializer)


def test_a_final_failure_is_in_rqs_failed_registry_with_the_runs_error(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], drain: Callable[..., None]
) -> None:
    failed = enqueue("broken", token="bad")
    retried = enqueue("flaky", token="shaky", failures=1)  # fails once, then succeeds

    drain()

    registry = failed_registry(redis)
    assert registry.get_job_ids() == [failed.job_id]  # a retried attempt is not a failure
    job = Job.fetch(failed.job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED
    assert job.latest_result() is not None
    assert "the source does not exist (simulated)" in str(job.latest_result().exc_string)
    assert runs.get(retried.token).state == "succeeded"  # type: ignore[union-attr]


def test_rq_requeue_of_a_failed_run_reruns_it_from_its_checkpoint(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a run that failed for good at item 3 of 5, after checkpointing 3 items
    run = enqueue("counting", token="c", items=5, seconds=0.0)
    redis.set("probe:fail:c", 3)
    drain()
    assert runs.get("c").state == "failed"  # type: ignore[union-attr]
    redis.delete("probe:fail:c")

    # When RQ's own API requeues its job (what `rq requeue` and rq-dashboard do)
    failed_registry(redis).requeue(run.job_id)
    drain()

    # Then it is the same run's next attempt, from the checkpoint: items 3 and 4 only
    record = runs.get("c")
    assert record is not None and record.state == "succeeded" and record.attempt == 2
    # ... with a fresh attempt budget, as the runner's own rerun gives (one rule for both)
    assert record.attempt_base == 1 and record.rerun_attempt == 2
    items = [e.decode().split(":")[0] for e in redis.lrange("probe:exec:c", 0, -1)]
    assert items == ["item0", "item1", "item2", "item3", "item3", "item4"]
    events = [e for _, e in read_events(redis, runs.keys, "c")]
    rerun = [e for e in events if e["event"] == "run.rerun"]
    assert len(rerun) == 1 and rerun[0]["via"] == "rq requeue" and rerun[0]["attempt"] == 2
    assert failed_registry(redis).get_job_ids() == []


def test_rq_requeue_reruns_again_and_a_job_already_rerun_by_the_runner_runs_nothing(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    run = enqueue("broken", token="bad")
    drain()
    for attempt in (2, 3):  # each requeue of the failed run's job is its next attempt
        failed_registry(redis).requeue(run.job_id)
        drain()
        assert runs.get("bad").attempt == attempt  # type: ignore[union-attr]

    # A failed run an operator reran with the runner: RQ's requeue of the old job is stale
    other = enqueue("broken", token="other")
    drain()
    assert rerun(redis, settings, "other").action == RerunAction.REQUEUED
    failed_registry(redis).requeue(other.job_id)
    drain()
    record = runs.get("other")
    assert record is not None and record.attempt == 2 and record.state == "failed"
    started = [e for _, e in read_events(redis, runs.keys, "other") if e["event"] == "run.state"]
    assert len(started) == 2  # attempts 1 and 2 only: the stale copy never ran


def test_the_rq_cli_requeues_with_the_json_serializer(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    run = enqueue("flaky", token="f", failures=5)  # fails its 5 attempts
    drain()
    assert runs.get("f").state == "failed"  # type: ignore[union-attr]
    rq = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "rq"
    done = subprocess.run(
        [str(rq), "requeue", "--queue", "default", "--all", "-S", "rq.serializers.JSONSerializer",
         "-u", str(settings.redis_url)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert run.job_id  # its last job is what was requeued
    drain()
    record = runs.get("f")
    assert record is not None and record.state == "succeeded" and record.attempt == 6


def test_a_run_failed_by_the_reaper_is_a_failed_job_too(
    redis: Redis, settings: Settings, runs: Runs, enqueue: Callable[..., Enqueued],
) -> None:  # fmt: skip
    # Given a run on its last attempt whose worker died (its lease gone)
    one_attempt = replace(settings, max_attempts=1)
    run = enqueue("slow_steps", steps=1)
    redis.hset(Keys(settings.prefix).run(run.token), "max_attempts", 1)
    assert Queue("default", connection=redis).pop_job_id() == run.job_id
    assert runs.begin(run.token, 1, holder=run.job_id, worker="w", version="t")[0] == "ok"
    redis.delete(Keys(settings.prefix).lease(run.token))

    # When the reaper fails it (no attempt left)
    Reaper(redis, one_attempt).sweep()

    # Then RQ's failed registry holds its job, with the reason
    assert runs.get(run.token).state == "failed"  # type: ignore[union-attr]
    assert failed_registry(redis).get_job_ids() == [run.job_id]
    job = Job.fetch(run.job_id, connection=redis, serializer=JSONSerializer)
    assert "WorkerLost" in str(job.latest_result().exc_string)  # type: ignore[union-attr]
