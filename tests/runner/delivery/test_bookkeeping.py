"""RQ's view of the runner's jobs, through RQ's own API: the horse writes RQ's records in two
pipelines instead of seven round trips, and RQ must see the same jobs, registries and workers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now

from runner.attempt.execute import Executor
from runner.config import Settings
from runner.delivery.bookkeeping import BatchedBookkeeping
from runner.delivery.dequeue import DeliveryQueue
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueued
from runner.runs.rqjobs import PERFORM
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.horse import Horse
from tests.conftest import RedisServer, WorkerProcess, wait_for


class PlainHorse(Horse):
    """The horse with RQ's own bookkeeping (SimpleWorker's methods), for comparison."""

    prepare_execution = Worker.prepare_execution
    prepare_job_execution = Worker.prepare_job_execution
    handle_execution_ended = Worker.handle_execution_ended
    handle_job_success = Worker.handle_job_success


def work_with(horse_class: type[Horse], redis: Redis, settings: Settings) -> None:
    horse = horse_class(list(settings.queues), connection=redis, serializer=JSONSerializer,
                        name="w.horse1")  # fmt: skip
    Executor(redis, settings, load_registry(settings.tasks_module), worker=horse.name).install()
    horse.work(burst=True, logging_level="WARNING")


ID = re.compile(rb"[0-9a-f]{32}")


def rq_records(redis: Redis) -> dict[str, Any]:
    """RQ's keys and what is in them, with timestamps and random ids left out."""
    found: dict[str, Any] = {}
    for raw_key in sorted(redis.scan_iter("rq:*")):
        key = ID.sub(b"<id>", raw_key).decode()
        kind = redis.type(raw_key).decode()
        if kind == "hash":
            found[key] = sorted(f.decode() for f in redis.hkeys(raw_key))
        elif kind == "zset":
            found[key] = [ID.sub(b"<id>", m).decode() for m in redis.zrange(raw_key, 0, -1)]
        else:
            found[key] = kind
    return found


def test_batched_bookkeeping_leaves_rq_the_records_its_own_bookkeeping_does(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
) -> None:  # fmt: skip
    seen = []
    for horse_class in (PlainHorse, Horse):
        redis.flushall()
        enqueue("noop", token="t")
        work_with(horse_class, redis, settings)
        seen.append(rq_records(redis))

    plain, batched = seen
    assert batched == plain
    # a succeeded job leaves nothing of its own, as RQ does with result_ttl=0
    assert not [k for k in batched if "finished" in k or k.startswith(("rq:job:", "rq:results:"))]


def test_a_succeeded_job_leaves_rq_no_records_and_its_run_the_result(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs,
) -> None:  # fmt: skip
    done = enqueue("noop", token="t")

    work_with(Horse, redis, settings)

    # RQ treats it as a job with result_ttl=0: no job hash, result or finished registry entry
    with pytest.raises(NoSuchJobError):
        Job.fetch(done.job_id, connection=redis, serializer=JSONSerializer)
    queue = Queue("default", connection=redis, serializer=JSONSerializer)
    assert FinishedJobRegistry(queue=queue).get_job_ids() == []
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert queue.count == 0 and redis.llen(DeliveryQueue(
        "default", connection=redis).intermediate_queue.key) == 0  # fmt: skip
    # and the run record keeps how it went
    record = runs.get(done.token)
    assert record is not None and record.state == "succeeded" and record.finished_at


@pytest.mark.slow
def test_rq_sees_a_running_job_started_on_a_busy_worker(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    running = enqueue("slow_steps", token="slow", steps=1, seconds=3.0)
    start_worker("--name", "A")
    wait_for(lambda: redis.llen("probe:exec:slow"), what="the job under way")

    job = Job.fetch(running.job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.STARTED
    queue = Queue("default", connection=redis, serializer=JSONSerializer)
    assert StartedJobRegistry(queue=queue).get_job_ids() == [running.job_id]
    [worker] = Worker.all(connection=redis)
    assert worker.name.startswith("A.horse") and worker.get_state() == "busy"
    assert worker.get_current_job_id() == running.job_id


def test_a_claim_sent_with_rqs_records_falls_back_when_redis_lost_its_script(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
) -> None:  # fmt: skip
    enqueue("noop", token="first")
    work()  # the horse's scripts are loaded now: its claims ride with RQ's started records
    redis.script_flush()  # as after a restart of Redis without its script cache

    enqueue("noop", token="second")
    work()

    record = runs.get("second")
    assert record is not None and record.state == "succeeded" and record.attempt == 1
    names = [e["event"] for _, e in read_events(redis, Keys(), "second")]
    assert names.count("run.state") == 1 and "attempt.skipped" not in names


def test_a_success_sent_with_rqs_records_after_the_lease_was_lost_writes_nothing(
    redis: Redis, runs: Runs, enqueue: Callable[..., Enqueued], work: Callable[[], None],
) -> None:  # fmt: skip
    enqueue("noop", token="warm-up")
    work()  # scripts loaded: the success below rides in RQ's success records
    enqueue("outlived", token="late")

    work()

    record = runs.get("late")
    assert record is not None and record.state == "running" and record.result is None
    events = [e for _, e in read_events(redis, Keys(), "late")]
    names = [e["event"] for e in events]
    assert "attempt.abandoned" in names and "run.succeeded" not in names
    assert "step.finished" in names  # its log events are kept, though its outcome is not


def test_the_workers_job_counters_count_every_job_written_at_most_once_a_second(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
) -> None:  # fmt: skip
    # Given 30 runs
    for i in range(30):
        enqueue("noop", token=f"c{i}")
    redis.config_resetstat()
    # When one horse drains them and stops
    work_with(Horse, redis, settings)
    # Then RQ's counters of that worker say 30 jobs, written in fewer writes than jobs
    counted = redis.hmget("rq:worker:w.horse1", "successful_job_count", "total_working_time")
    assert int(counted[0] or 0) == 30 and float(counted[1] or 0) > 0
    floats = int(redis.info("commandstats").get("cmdstat_hincrbyfloat", {}).get("calls", 0))
    writes = floats - 2 * 30  # each job's figures add its wait's and duration's sums
    assert 1 <= writes < 30


def test_a_runner_job_kept_by_rqs_result_ttl_minus_1_keeps_its_hash_and_finished_entry(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued], runs: Runs,
) -> None:  # fmt: skip
    # Given a run whose RQ job asks RQ to keep its result forever (result_ttl=-1, RQ's API)
    kept = enqueue("noop", token="kept")
    redis.hset(f"rq:job:{kept.job_id}", "result_ttl", -1)

    work_with(Horse, redis, settings)

    # Then RQ keeps it as RQ would: the job hash, without a TTL, finished, in the registry
    job = Job.fetch(kept.job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED and redis.ttl(job.key) == -1
    queue = Queue("default", connection=redis, serializer=JSONSerializer)
    assert FinishedJobRegistry(queue=queue).get_job_ids() == [kept.job_id]
    record = runs.get("kept")
    assert record is not None and record.state == "succeeded"


class Staging(BatchedBookkeeping):
    """RQ's batched bookkeeping with a command of its own sent with the started records and
    one with the success records (as the horse's claim and release are), noting the replies
    it is handed."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(["default"], connection=redis, serializer=JSONSerializer, name="w1")
        self.handed: list[tuple[str, Any]] = []

    def stage_claim(self, job: Job, pipeline: Pipeline) -> Callable[[Any], None]:
        pipeline.incr("claims")
        return lambda reply: self.handed.append(("claim", reply))

    def stage_release(self, pipeline: Pipeline) -> Callable[[Any], None]:
        pipeline.incr("releases")
        return lambda reply: self.handed.append(("release", reply))


def runner_job(redis: Redis) -> Job:
    job = Job.create(PERFORM, kwargs={"token": "t", "attempt": 1}, connection=redis,
                     serializer=JSONSerializer, origin="default")  # fmt: skip
    job.save()
    return job


def started(redis: Redis) -> tuple[Staging, Job, Execution, Queue]:
    """A runner job started by `Staging` (its claim handed its reply) and performed: what
    `handle_job_success` is called with."""
    worker, job = Staging(redis), runner_job(redis)
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    job.ended_at = now()
    return worker, job, execution, Queue("default", connection=redis, serializer=JSONSerializer)


def test_a_failed_write_among_rqs_started_records_is_raised_once_the_claim_has_its_reply(
    redis: Redis,
) -> None:
    worker, job = Staging(redis), runner_job(redis)
    worker.prepare_execution(job)
    redis.delete(job.key)
    redis.set(job.key, "not a hash")  # RQ's started state of the job cannot be written

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        worker.prepare_job_execution(job)
    assert worker.handed == [("claim", 1)]


def test_a_failed_write_among_rqs_success_records_is_raised_once_the_release_has_its_reply(
    redis: Redis,
) -> None:
    worker, job, execution, queue = started(redis)
    redis.delete(execution.worker_executions_key)
    redis.set(execution.worker_executions_key, "not a set")  # RQ's clean-up cannot be written

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        worker.handle_job_success(job, queue, queue.started_job_registry, execution)
    # the release went with them once and was told so (not sent again on its own)
    assert worker.handed == [("claim", 1), ("release", 1)]
    assert redis.get("releases") == b"1"


def test_success_records_that_cannot_be_sent_leave_the_release_to_go_in_by_itself(
    redis_server: RedisServer, redis: Redis,
) -> None:  # fmt: skip
    worker, job, execution, queue = started(redis)
    redis_server.stop()  # Redis gone before the success records are sent

    with pytest.raises(RedisConnectionError):
        worker.handle_job_success(job, queue, queue.started_job_registry, execution)
    # the release is told it was not sent (None): the horse's makes it directly, retried
    assert worker.handed == [("claim", 1), ("release", None)]


def commands_sent(redis: Redis) -> set[str]:
    """The commands Redis ran since its statistics were reset, INFO and CONFIG left out."""
    names = {name.removeprefix("cmdstat_") for name in redis.info("commandstats")}
    return {name for name in names if not name.startswith(("info", "config"))}


def test_a_runner_jobs_end_costs_no_round_trip_and_a_plain_jobs_is_rqs_heartbeat(
    redis: Redis,
) -> None:
    worker, job = BatchedBookkeeping(["default"], connection=redis, name="w1"), runner_job(redis)
    plain = Job.create("tests.tasks.anything", connection=redis, origin="default")
    plain.save()
    queue = Queue("default", connection=redis)
    redis.config_resetstat()

    worker.handle_execution_ended(job, queue, 60)
    assert job.ended_at is not None and commands_sent(redis) == set()

    worker.handle_execution_ended(plain, queue, 60)  # RQ's own: the job's heartbeat
    assert plain.ended_at is not None and "hset" in commands_sent(redis)
