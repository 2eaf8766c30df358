"""runner.execute: jobs queued before the engine moved into subsystems name
`runner.execute.perform_attempt`; a deploy runs them."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from runner.runs.enqueue import Enqueued
from runner.runs.rqjobs import LEGACY_PERFORM, PERFORM
from runner.runs.transitions import Runs
from tests.runner.runs.test_rqjobs import TASK_ARGS


def test_queued_jobs_name_a_function_that_stays_importable() -> None:
    # Jobs already queued in a live Redis carry this exact string: a deploy must resolve it.
    from rq.utils import import_attribute

    from runner.attempt.execute import perform_attempt

    assert PERFORM == "runner.attempt.execute.perform_attempt"
    assert LEGACY_PERFORM == "runner.execute.perform_attempt"  # before the subsystem folders
    assert import_attribute(PERFORM) is perform_attempt
    assert import_attribute(LEGACY_PERFORM) is perform_attempt


def test_a_job_queued_by_the_previous_release_runs(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, drain: Callable[..., None]
) -> None:
    # Given a run whose queued job names the function where the previous release had it
    queued = enqueue("slow_steps", **TASK_ARGS)
    job_tuple = (LEGACY_PERFORM, None, (), {"token": queued.token, "attempt": 1})
    redis.hset(f"rq:job:{queued.job_id}", "data", zlib.compress(json.dumps(job_tuple).encode()))
    assert Job.fetch(queued.job_id, connection=redis, serializer=JSONSerializer).func_name == (
        LEGACY_PERFORM
    )
    # When a worker of this release works the queue
    drain()
    # Then the run succeeded, once
    record = runs.get(queued.token)
    assert record is not None and (record.state, record.attempt) == ("succeeded", 1)
