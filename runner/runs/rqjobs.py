"""The RQ job of one attempt: the hash RQ reads, built the way RQ builds it, without building
an RQ `Job` object per attempt.

Every attempt's job calls the same function with JSON keyword arguments `token` and `attempt`;
what else RQ stores (timeouts, TTLs, status, origin, empty callback fields...) depends only on
the queue and the timeout. So one real `Job` per (queue, timeout) gives a template of fields,
and each attempt adds its own payload and description. A test compares the result with RQ's
own `create_job(...).to_dict()`, so a change in RQ's layout cannot slip by.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from runner.config import Settings
from runner.record import texts
from runner.tasks import TaskRegistry

# The function every attempt's job names, by this string: jobs already queued in a live Redis
# carry it, so it must stay importable under this name (keep an alias where it was if the
# function moves), or a deploy fails them. Jobs queued before the engine moved into subsystems
# carry LEGACY_PERFORM (runner/execute.py, the alias). tests/runner/test_execute.py pins both.
PERFORM = "runner.attempt.execute.perform_attempt"
LEGACY_PERFORM = "runner.execute.perform_attempt"
PERFORMS = frozenset({PERFORM, LEGACY_PERFORM})
# A succeeded job leaves no RQ records (no Result stream, no finished registry entry, no job
# hash), as RQ does with result_ttl=0: the run record keeps the result. A failed job stays in
# RQ's failed registry (`rq requeue` reruns it).
RESULT_TTL = 0


def payload(token: str, attempt: int) -> bytes:
    """The job's `data` field: RQ's JSON-serialized (function, instance, args, kwargs), zlibbed."""
    job_tuple = (PERFORM, None, (), {"token": token, "attempt": attempt})
    return zlib.compress(json.dumps(job_tuple).encode())  # as rq.serializers.JSONSerializer


def description(token: str, attempt: int) -> str:
    return f"{token} attempt {attempt}"


class AttemptJobs:
    """Queues by name, and the fields of attempt jobs from one template per (queue, timeout)."""

    def __init__(self, redis: Redis, failure_ttl: int) -> None:
        self.redis = redis
        self.failure_ttl = failure_ttl
        self._queues: dict[str, Queue] = {}
        self._templates: dict[tuple[str, int], dict[str, Any]] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    def shared_fields(self, queue_name: str, timeout: int, at: datetime) -> dict[str, Any]:
        """The fields every attempt job of this queue and timeout has, stamped created and
        enqueued `at` (without `data` and `description`, which `payload` and `description`
        give per attempt)."""
        key = (queue_name, timeout)
        if key not in self._templates:
            template = self.rq_fields(queue_name, "template", 0, timeout, "template")
            for name in ("data", "description", "created_at", "enqueued_at"):
                template.pop(name)
            self._templates[key] = template
        stamp = utcformat(at)
        return {**self._templates[key], "created_at": stamp, "enqueued_at": stamp}

    def fields(
        self, queue_name: str, token: str, attempt: int, timeout: int, at: datetime
    ) -> dict[str, Any]:
        """All the hash fields of one attempt's job, as RQ would write them on enqueue."""
        return {
            **self.shared_fields(queue_name, timeout, at),
            "data": payload(token, attempt),
            "description": description(token, attempt),
        }

    def rq_fields(
        self, queue_name: str, token: str, attempt: int, timeout: int, job_id: str
    ) -> dict[str, Any]:
        """The same, built by RQ itself (the template's source, and the tests' reference)."""
        queue = self.queue(queue_name)
        job = queue.create_job(
            PERFORM,
            kwargs={"token": token, "attempt": attempt},
            job_id=job_id,
            timeout=timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=self.failure_ttl,
            description=description(token, attempt),
        )
        job.origin = queue.name
        job.enqueued_at = job.created_at
        job._status = JobStatus.QUEUED
        fields = job.to_dict()
        fields["status"] = JobStatus.QUEUED.value
        return fields


def known_queues(
    redis: Redis, settings: Settings, *, tasks: TaskRegistry | None = None
) -> list[str]:
    """Every queue of the deployment by name, sorted: the configured ones (`RUNNER_QUEUES`),
    each one RQ has had a job pushed to (its set of queues, which every script that pushes a
    job adds to), and, given the registry, the queues its tasks are declared on. The one
    list: monitoring, the console, the reaper and retention all read it."""
    pushed = texts(redis.smembers(Queue.redis_queues_keys))
    names = {q.removeprefix(Queue.redis_queue_namespace_prefix) for q in pushed}
    return sorted(names | set(settings.queues) | (tasks.queues if tasks else set()))


def job_key(job_id: str) -> str:
    return Job.key_for(job_id)
