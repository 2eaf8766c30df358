"""The horse: RQ's `SimpleWorker` in a child process of the supervisor (runner.worker.supervisor).

Jobs run in-process (no fork per job), yet a job that crashes its process (segfault, OOM
kill, SIGKILL) takes down only its horse, which the supervisor replaces. The horse dies with
the supervisor (PR_SET_PDEATHSIG), so no orphaned horse ever runs beside a new attempt.

Stopping (SIGTERM or SIGINT, to the supervisor alone or to every process at once): the horse
takes no more jobs, and its attempt hands its run over at its next checkpoint or step
boundary (the run goes on at once as its next attempt, on another worker). A horse still
busy `RUNNER_STOP_SECONDS` after the signal, or at a second signal to the supervisor, is
killed, and the supervisor hands its run over itself (runner.worker.handover).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog
from redis.client import Pipeline
from redis.exceptions import NoScriptError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.worker import WorkerStatus

import runner.logs as logs
from runner.attempt.execute import Executor
from runner.config import Settings
from runner.connections.redis import REDIS_DOWN, connect
from runner.delivery.bookkeeping import BatchedBookkeeping, lean
from runner.delivery.dequeue import (
    DeliveryQueue,
    Taken,
    load_take,
    put_back,
    stage_take,
    taken,
)
from runner.errors import RunFailed
from runner.runs import tracing
from runner.runs.deploys import mark_deploy
from runner.tasks import load_registry
from runner.worker.liveness import CODE_VERSION_FIELD

log = structlog.get_logger("runner.worker.horse")
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What the operator asked of this worker."""

    queues: tuple[str, ...]
    burst: bool = False
    name: str = ""
    concurrency: int = 1  # horses under the supervisor

    def worker_name(self, pid: int | None = None) -> str:
        """The name given, or host.pid of the supervisor (`pid`; default: this process)."""
        return self.name or f"{socket.gethostname()}.{pid or os.getpid()}"


class Horse(BatchedBookkeeping):
    """RQ's in-process worker, run as the supervisor's child.

    RQ spends round trips per job on bookkeeping that changes rarely: it refreshes the
    worker's registration (a key that lives for minutes), rewrites an unchanged state and
    polls the suspension flag before every job. The horse does each at most every few
    seconds, or only on change: the same information, a fraction of the round trips.

    Delivery is the runner's (runner.delivery.dequeue): a job id stays in its queue's intermediate
    list until the attempt claims its lease, and the reaper deals with ids left there by a
    horse that died. The next job is taken in the transaction that records a success, and
    put back if the horse stops or is suspended before it begins it."""

    queue_class = DeliveryQueue
    executor: Executor | None = None  # claims with RQ's records, hands over at a stop
    heartbeat_every = 5.0
    suspension_every = 1.0
    _last_heartbeat = 0.0
    _last_suspension_check = 0.0
    _waiting = False  # blocked waiting for a job: a stop may interrupt the wait
    _ahead: Taken | None = None  # the next job, taken with the last one's success records
    stop_asked_early = False  # a stop signal came while the horse process was starting

    @classmethod
    def note_early_stop(cls, signum: int, frame: FrameType | None) -> None:
        """The horse process's handler until the horse works (set first thing after fork)."""
        cls.stop_asked_early = True

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._stop_soon)
        signal.signal(signal.SIGINT, self._stop_soon)
        if self.stop_asked_early:
            self._stop_soon(signal.SIGTERM, None)

    def _stop_soon(self, signum: int, frame: FrameType | None) -> None:
        """Take no more jobs; the running attempt hands its run over at its next checkpoint.

        Every signal means the same here: a platform that signals every process at once
        reaches the horse directly and through its supervisor, and that is one stop. Only
        the supervisor escalates (it kills the horse at the deadline or a second signal)."""
        self._stop_requested = True
        if self.executor is not None:
            self.executor.hand_over_soon()
        if self._waiting:  # idle: leave the blocking wait now (RQ does the same)
            self._waiting = False
            raise StopRequested()

    def subscribe(self) -> None:
        # RQ's command listener is a thread: one that may take the process's stop signal
        # would leave the main thread, which runs Python's handlers, blocked in its wait.
        with stop_signals_blocked():
            super().subscribe()  # type: ignore[no-untyped-call]

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Any] | None:
        if self._stop_requested:
            return None
        ahead = self._take_ahead()
        if ahead is not None:
            return ahead
        self._waiting = True
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self._waiting = False

    def stage_claim(self, job: Job, pipeline: Pipeline) -> Callable[[Any], None] | None:
        if self.executor is None or not lean(job):
            return None
        return self.executor.stage_claim(pipeline, job)

    def stage_release(self, pipeline: Pipeline) -> Callable[[Any], None] | None:
        return None if self.executor is None else self.executor.stage_release(pipeline)

    def takes_ahead(self) -> bool:
        return not self._stop_requested

    def stage_next(self, pipeline: Pipeline) -> Callable[[Any], None] | None:
        if not self.takes_ahead():
            return None
        keys = [queue.key for queue in self._ordered_queues]
        stage_take(self.connection, pipeline, keys, worker=self.key, idle=WorkerStatus.IDLE.value)

        def took(reply: Any) -> None:
            self._ahead = taken(reply)
            if isinstance(reply, NoScriptError):  # nothing moved: the loop dequeues as usual
                load_take(self.connection)
            elif not isinstance(reply, Exception):  # else RQ's loop writes `idle` itself
                # idle in Redis when nothing was taken; busy with the next job otherwise,
                # until its start writes busy again: RQ's `idle` after the job is not sent
                self._state = WorkerStatus.IDLE

        return took

    def _take_ahead(self) -> tuple[Job, Any] | None:
        """The job taken ahead with the last success, as RQ's dequeue returns it; None when
        there is none (or its hash was gone: the reaper clears its id)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        queue = next(queue for queue in self.queues if queue.key == ahead[0])
        found = DeliveryQueue.restore_taken(
            queue, ahead, job_class=self.job_class, serializer=self.serializer
        )
        if found is not None:
            job, queue = found
            self.reorder_queues(reference_queue=queue)
            job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
        return found

    def _put_back_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            with contextlib.suppress(*REDIS_DOWN):  # else the reaper gives it out later
                put_back(self.connection, ahead[0], ahead[1])

    def check_for_suspension(self, burst: bool) -> None:
        now = time.monotonic()
        if now - self._last_suspension_check >= self.suspension_every:
            self._last_suspension_check = now
            if is_suspended(self.connection, self):  # RQ's loop waits there: not with a job
                self._put_back_ahead()
                if self.executor is None:
                    super().check_for_suspension(burst)
                    return
                since = self.executor.keys.suspended_since
                self.connection.set(since, f"{time.time():.3f}", nx=True)
                super().check_for_suspension(burst)
                self.connection.delete(since)  # resumed

    def teardown(self) -> None:
        self._put_back_ahead()
        with contextlib.suppress(*REDIS_DOWN), self.connection.pipeline(False) as pipeline:
            self.write_counters(pipeline)  # the jobs of its last second
            pipeline.execute()
        super().teardown()  # type: ignore[no-untyped-call]

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if isinstance(exc_info[1], RunFailed):
            return  # the run's own failure: logged as `run.failed` already, no traceback
        super().handle_exception(job, *exc_info)

    def register_birth(self) -> None:
        super().register_birth()  # type: ignore[no-untyped-call]
        if self.executor is not None:  # health notes live workers of two code versions
            self.connection.hset(self.key, CODE_VERSION_FIELD, self.executor.version)
        load_take(self.connection)  # `stage_next` calls it by its sha alone

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        now = time.monotonic()
        if (
            pipeline is None
            and timeout is None
            and now - self._last_heartbeat < self.heartbeat_every
        ):
            return
        super().heartbeat(timeout, pipeline)
        self._last_heartbeat = now


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Threads started in this block never receive SIGTERM/SIGINT (they inherit the mask), so
    the kernel hands those to the main thread: Linux gives a process's signal to any thread
    that does not block it, and only the main thread's blocking wait would be cut short."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def horse_name(options: WorkerOptions, *, horse: int, supervisor: int) -> str:
    """The RQ worker name of a supervisor's horse (also the `worker` of its runs): the
    worker's name (host.pid of the supervisor by default, in either process) and its pid."""
    return f"{options.worker_name(supervisor)}.horse{horse}"


def horse_main(settings: Settings, options: WorkerOptions, parent: int) -> int:
    """The horse's life: connect, work the queues, return an exit code (0: stopped cleanly)."""
    die_with_parent(parent)
    random.seed()
    logs.configure()
    redis = connect(settings, check=False)
    registry = load_registry(settings.tasks_module)
    horse = Horse(
        list(options.queues),
        connection=redis,
        name=horse_name(options, horse=os.getpid(), supervisor=parent),
        serializer=JSONSerializer,
    )
    horse.executor = Executor(redis, settings, registry, worker=horse.name)
    horse.executor.install()
    # Here, not in the supervisor: finding the version may run `git`, and the supervisor's
    # only child should be its horse.
    mark_deploy(redis, settings, by=f"worker {options.worker_name(parent)}")
    try:
        horse.work(burst=options.burst, logging_level="WARNING", with_scheduler=False)
    finally:
        tracing.flush()  # the horse ends with os._exit, which runs no exit hook
    return 0 if options.burst or horse._stop_requested else 1
