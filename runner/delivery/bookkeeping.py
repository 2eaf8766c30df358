"""RQ's bookkeeping around each job, in fewer round trips: the same writes, batched.

RQ's in-process worker spends seven round trips per job on its own records: the execution and
the worker's busy state (one pipeline), the job's started state (another), a heartbeat of the
finished job, a WATCH and a read of its dependents, the outcome (a third pipeline) and the
worker's idle state. The runner's jobs have no dependents (work is chained by tokens, not RQ
dependencies), no repeats and no callbacks, so for them the started records go in one
pipeline and the outcome and the idle state in another: RQ's queues, job hashes, registries,
results and worker records end up exactly as RQ writes them, in two round trips. A succeeded
runner job is treated as RQ treats `result_ttl=0` (runner.runs.rqjobs.RESULT_TTL): no Result
stream, no finished registry entry, its job hash deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from redis.client import Pipeline
from rq import SimpleWorker
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from runner.runs.rqjobs import PERFORMS


def lean(job: Job) -> bool:
    """Whether `job` is one of the runner's attempts (no dependents, repeats or callbacks)."""
    return job.func_name in PERFORMS and job.repeats_left is None


def settle(replies: list[Any], hands: list[Callable[[Any], None]]) -> None:
    """Hand the last `len(hands)` replies of a pipeline (what was staged after RQ's records)
    to their functions, then raise the first error among RQ's own replies: a claim, release
    or job taken ahead is told how it went even when one of RQ's writes failed (a release
    not handed its reply would not log its run's end; a job taken ahead would wait for the
    reaper)."""
    own = len(replies) - len(hands)
    for hand, reply in zip(hands, replies[own:], strict=True):
        hand(reply)
    for reply in replies[:own]:
        if isinstance(reply, Exception):
            raise reply


COUNTERS_EVERY = 1.0  # seconds: the worker's job counters are written at most this often
BEAT_AGAIN = 10.0  # seconds: the worker key's TTL is renewed per job at most this often


class BatchedBookkeeping(SimpleWorker):
    """RQ's SimpleWorker, writing its records of a runner job in two pipelines."""

    _started: Pipeline | None = None  # the execution's records, sent with the job's
    _jobs_uncounted = 0  # RQ's worker counters, added up since they were last written
    _seconds_uncounted = 0.0
    _counted_at = float("-inf")
    _kept: tuple[int, float] = (0, float("-inf"))  # the worker key's last TTL, and when
    _started_registries: dict[str, StartedJobRegistry] | None = None  # by queue name

    def prepare_execution(self, job: Job) -> Execution:
        if not lean(job):
            return super().prepare_execution(job)
        pipeline = self.connection.pipeline(transaction=False)  # records, not a decision
        ttl = self.get_heartbeat_ttl(job)
        renew = self._kept[0] != ttl or time.monotonic() - self._kept[1] >= BEAT_AGAIN
        execution = self._create_execution(job, ttl, pipeline, renew_index=renew)
        self.executions[execution.id] = execution
        # the worker's state and heartbeat in one write (RQ: set_state, then heartbeat)
        self._state, self.last_heartbeat = WorkerStatus.BUSY, now()
        beat = utcformat(self.last_heartbeat)
        pipeline.hset(self.key, mapping={"state": WorkerStatus.BUSY.value, "last_heartbeat": beat})
        if renew:
            pipeline.expire(self.key, ttl)
            self._kept = (ttl, time.monotonic())
        self._started = pipeline
        return execution

    def _create_execution(
        self, job: Job, ttl: int, pipeline: Pipeline, *, renew_index: bool
    ) -> Execution:
        """RQ's `Execution.create`, the same records, but the TTL of the worker's index of
        executions renewed with the worker key's, at most every BEAT_AGAIN seconds (RQ renews
        it per job and with every heartbeat)."""
        execution = Execution(
            id=uuid4().hex, job_id=job.id, connection=job.connection, worker_name=self.name
        )
        execution._job = job
        execution.save(ttl=ttl, pipeline=pipeline)
        ExecutionRegistry(job_id=job.id, connection=pipeline).add(
            execution=execution, ttl=ttl, pipeline=pipeline
        )
        self.started_registry(job).add_execution(execution, pipeline=pipeline, ttl=ttl, xx=False)
        pipeline.sadd(execution.worker_executions_key, execution.composite_key)
        if renew_index:
            pipeline.expire(execution.worker_executions_key, ttl + 60)
        return execution

    def started_registry(self, job: Job) -> StartedJobRegistry:
        """The started registry of the job's queue: one object per queue for the worker's
        life (RQ builds one at each use, each through its serializer's Protocol check)."""
        if self._started_registries is None:
            self._started_registries = {}
        registry = self._started_registries.get(job.origin)
        if registry is None:
            registry = self._started_registries[job.origin] = job.started_job_registry
        return registry

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """The job's started state, in the pipeline of its execution; a runner job's id stays
        in its intermediate list (runner.delivery.dequeue takes it out when the attempt claims
        its lease). A plain RQ job's id leaves it here, as RQ's one-queue workers do: no claim
        takes it out, and the reaper leaves the jobs of others alone."""
        pipeline, self._started = self._started, None
        if pipeline is None:
            super().prepare_job_execution(job, remove_from_intermediate_queue=True)
            return
        # its heartbeat among them; no PERSIST: a runner job's hash has no TTL until it fails
        # (a failed one requeued by RQ's tools is persisted by the claim: runner.runs.scripts)
        job.prepare_for_execution(self.name, pipeline=pipeline)
        claimed = self.stage_claim(job, pipeline)
        settle(pipeline.execute(raise_on_error=False), [] if claimed is None else [claimed])

    def stage_claim(self, job: Job, pipeline: Pipeline) -> Callable[[Any], None] | None:
        """More of the job's start to send with RQ's started records (the horse's claim of
        the attempt's lease): returns what to call with its reply, or None."""
        return None

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        if not lean(job):
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()  # no heartbeat: it only covers callbacks, which runner jobs lack

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry,
        execution: Execution,
    ) -> None:  # fmt: skip
        if not lean(job):
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        assert job.started_at is not None and job.ended_at is not None
        with self.connection.pipeline(transaction=False) as pipeline:
            self._count_success((job.ended_at - job.started_at).total_seconds(), pipeline)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:  # a job queued by a release that kept RQ's success records
                job._handle_success(
                    result_ttl, pipeline=pipeline, worker_name=self.name,
                    execution_id=execution.id, execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )  # fmt: skip
                job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            job._status = JobStatus.FINISHED
            if result_ttl == 0:  # what RQ's cleanup(0) and cleanup_execution leave, in 3 commands
                pipeline.delete(execution.key, job.key, job.execution_registry.key)
                started_job_registry.remove_execution(execution=execution, pipeline=pipeline)
                pipeline.srem(execution.worker_executions_key, execution.composite_key)
                self.executions.pop(execution.id, None)
            else:
                self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            if not self.takes_ahead():  # else the move of the next job writes it if need be
                self.set_state(WorkerStatus.IDLE, pipeline=pipeline)  # execute_job's, sent here
            released = self.stage_release(pipeline)
            staged = [f for f in (released, self.stage_next(pipeline)) if f is not None]
            try:
                replies = pipeline.execute(raise_on_error=False)
            except Exception:
                if released:
                    released(None)  # the run's outcome goes in by itself, retried
                raise
        settle(replies, staged)

    def _count_success(self, seconds: float, pipeline: Pipeline) -> None:
        """RQ's worker counters (successful_job_count, total_working_time), added up here and
        written at most once a second, and when the worker stops (`write_counters`)."""
        self._jobs_uncounted += 1
        self._seconds_uncounted += seconds
        if time.monotonic() - self._counted_at >= COUNTERS_EVERY:
            self.write_counters(pipeline)

    def write_counters(self, pipeline: Pipeline) -> None:
        """Add the jobs counted since the last write to RQ's worker counters, in `pipeline`."""
        if self._jobs_uncounted:
            pipeline.hincrby(self.key, "successful_job_count", self._jobs_uncounted)
            pipeline.hincrbyfloat(self.key, "total_working_time", self._seconds_uncounted)
        self._jobs_uncounted, self._seconds_uncounted = 0, 0.0
        self._counted_at = time.monotonic()

    def stage_release(self, pipeline: Pipeline) -> Callable[[Any], None] | None:
        """More of the job's end to send with RQ's success records (the runner's release of
        the attempt): returns what to call with its reply, or None."""
        return None

    def takes_ahead(self) -> bool:
        """Whether `stage_next` takes the next job, in a move that leaves the worker `busy`
        while it holds one and writes `idle` when the queues are empty."""
        return False

    def stage_next(self, pipeline: Pipeline) -> Callable[[Any], None] | None:
        """The start of the next job to send with them too (the horse takes it ahead):
        returns what to call with its reply, or None."""
        return None

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """Write the worker's state only when it changes (or rides in a pipeline)."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)
