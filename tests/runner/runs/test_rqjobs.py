"""The RQ job of an attempt: the hash RQ would write itself, built from a shared template."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from runner.config import Settings
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.rqjobs import PERFORM, known_queues
from runner.runs.transitions import Runs
from runner.tasks import Task, TaskRegistry, noop

TASK_ARGS = {"steps": 1, "seconds": 0.0}


def test_an_attempts_job_is_the_hash_rq_itself_would_write(
    settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given a run enqueued (its job from a shared template) and moved on to attempt 2
    first = enqueue("slow_steps", **TASK_ARGS)
    enqueuer = Enqueuer(redis, settings)
    queued = runs.get(first.token)
    assert queued is not None and runs.requeue_undelivered(queued)
    second = runs.get(first.token)
    assert second is not None
    for attempt, jid in [(1, first.job_id), (2, second.job_id)]:
        # Then each job's hash is field for field what RQ's create_job + to_dict gives
        stored = {k.decode(): v for k, v in redis.hgetall(f"rq:job:{jid}").items()}  # type: ignore[union-attr]
        expected = enqueuer.jobs.rq_fields("default", first.token, attempt, 3600, jid)
        stamps = ("created_at", "enqueued_at")
        assert {k: v for k, v in stored.items() if k not in stamps} == {
            k: v if isinstance(v, bytes) else str(v).encode()
            for k, v in expected.items() if k not in stamps
        }  # fmt: skip
        # And RQ reads it back as a call of the runner's function for that attempt
        job = Job.fetch(jid, connection=redis, serializer=JSONSerializer)
        assert (job.func_name, job.kwargs) == (PERFORM, {"token": first.token, "attempt": attempt})
        assert job.origin == "default" and job.get_status() == "queued"
        assert job.enqueued_at is not None and job.created_at is not None


def test_the_known_queues_are_the_configured_the_used_and_the_declared_ones(
    settings: Settings, redis: Redis
) -> None:
    # Given a deployment configured for `default`, a task declared on `special`, and a run
    # enqueued on `elsewhere` (RQ now knows that queue)
    registry = TaskRegistry()
    registry.register(Task(name="tidy", fn=noop, queue="special"))
    Enqueuer(redis, settings).enqueue(Request(registry.get("noop"), {}, queue="elsewhere"))
    # When the known queues are asked for, without and with the registry
    # Then the configured and used ones are there, and the declared ones with the registry
    assert known_queues(redis, settings) == ["default", "elsewhere"]
    assert known_queues(redis, settings, tasks=registry) == ["default", "elsewhere", "special"]
