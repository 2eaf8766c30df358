"""The worker: a supervisor process that keeps one long-lived horse alive and runs the reaper.

The horse is RQ's `SimpleWorker` in a child process: jobs run in-process (no fork per job),
yet a job that crashes its process (segfault, OOM kill, SIGKILL) takes down only the horse,
which the supervisor replaces. The horse dies with the supervisor (PR_SET_PDEATHSIG), so no
orphaned horse ever runs beside a new attempt.

Stopping (SIGTERM or SIGINT, to the supervisor alone or to every process at once): the horse
takes no more jobs, and its attempt hands its run over at its next checkpoint or step
boundary (the run goes on at once as its next attempt, on another worker). A horse still
busy `RUNNER_STOP_SECONDS` after the signal, or at a second signal to the supervisor, is
killed, and the supervisor hands its run over itself (runner.handover).
"""

from __future__ import annotations

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
from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer

import runner.logs as logs
from runner.bookkeeping import BatchedBookkeeping, lean
from runner.config import Settings
from runner.delivery import DeliveryQueue
from runner.deploys import mark_deploy
from runner.errors import RunFailed
from runner.execute import Executor
from runner.handover import hand_over_killed
from runner.reaper import Reaper
from runner.redis import connect
from runner.tasks import load_registry

log = structlog.get_logger("runner.worker")
PR_SET_PDEATHSIG = 1
HEALTHY_SECONDS = 30.0  # a horse that lived this long resets the restart backoff
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What the operator asked of this worker."""

    queues: tuple[str, ...]
    burst: bool = False
    name: str = ""

    def worker_name(self, pid: int | None = None) -> str:
        """The name given, or host.pid of the supervisor (`pid`; default: this process)."""
        return self.name or f"{socket.gethostname()}.{pid or os.getpid()}"


class Horse(BatchedBookkeeping):
    """RQ's in-process worker, run as the supervisor's child.

    RQ spends round trips per job on bookkeeping that changes rarely: it refreshes the
    worker's registration (a key that lives for minutes), rewrites an unchanged state and
    polls the suspension flag before every job. The horse does each at most every few
    seconds, or only on change: the same information, a fraction of the round trips.

    Delivery is the runner's (runner.delivery): a job id stays in its queue's intermediate
    list until the attempt claims its lease, and the reaper deals with ids left there by a
    horse that died."""

    queue_class = DeliveryQueue
    executor: Executor | None = None  # claims with RQ's records, hands over at a stop
    heartbeat_every = 5.0
    suspension_every = 1.0
    _last_heartbeat = 0.0
    _last_suspension_check = 0.0
    _waiting = False  # blocked waiting for a job: a stop may interrupt the wait
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

    def check_for_suspension(self, burst: bool) -> None:
        now = time.monotonic()
        if now - self._last_suspension_check >= self.suspension_every:
            self._last_suspension_check = now
            super().check_for_suspension(burst)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if isinstance(exc_info[1], RunFailed):
            return  # the run's own failure: logged as `run.failed` already, no traceback
        super().handle_exception(job, *exc_info)

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
    horse.work(burst=options.burst, logging_level="WARNING", with_scheduler=False)
    return 0 if options.burst or horse._stop_requested else 1


class Supervisor:
    """Keeps a horse running, restarts it with backoff when it dies, sweeps with the reaper,
    and stops within `RUNNER_STOP_SECONDS` of a SIGTERM/SIGINT (see the module docstring)."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.horse: int | None = None
        self.stopping = False
        self.stop_by: float | None = None  # monotonic time the horse must be gone by
        self.backoff = 1.0
        self.redis = connect(settings, check=False)
        self.reaper = Reaper(self.redis, settings)

    def run(self) -> int:
        """Work until stopped (SIGTERM/SIGINT) or, in burst mode, until nothing is left."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        log.info("worker.started", name=self.options.worker_name(), queues=self.options.queues)
        self._tell(
            f"worker {self.options.worker_name()} on {', '.join(self.options.queues)}."
            " Ctrl-C: hand the current run over at its next checkpoint, then stop. Ctrl-C"
            " twice: stop at once (either way the run goes on from its last checkpoint on"
            " another worker, at once)."
        )
        while True:
            if self.horse is None:
                if self.stopping:
                    break
                started = time.monotonic()
                self.horse = self._spawn()
            moved = 0 if self.stopping else self._sweep()
            code = self._wait_for_horse(self.settings.reaper_interval)
            if code is None:
                if self.stop_by is not None and time.monotonic() >= self.stop_by:
                    self.stop_by = None  # once: then wait for the killed horse to be reaped
                    self._kill_horse("the stop deadline passed before a checkpoint")
                continue
            horse, self.horse = self.horse, None
            if self.stopping:
                if code != 0:  # killed (deadline, second signal) or crashed while stopping
                    self._hand_over_from(horse, code)
                break
            if self.options.burst and code == 0 and not moved and not self._sweep():
                break
            if code != 0:
                self._pause_before_restart(code, time.monotonic() - started)
        log.info("worker.stopped", name=self.options.worker_name())
        return 0

    def _spawn(self) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            # Not the supervisor's handler: a stop signalled to every process at once may
            # reach this horse before it works, and must still stop it.
            for signum in STOP_SIGNALS:
                signal.signal(signum, Horse.note_early_stop)
            os.setpgrp()  # the terminal's Ctrl-C reaches the supervisor, which stops the horse
            code = 1
            try:
                code = horse_main(self.settings, self.options, parent)
            except BaseException as exc:  # the horse must never return into the supervisor's loop
                log.error("horse.crashed", error=repr(exc), exc_info=exc)
            finally:
                os._exit(code)
        log.info("horse.started", pid=pid)
        return pid

    def _wait_for_horse(self, seconds: float) -> int | None:
        """The horse's exit code once it exits; None after `seconds` or at the stop deadline."""
        deadline = time.monotonic() + seconds
        while True:
            assert self.horse is not None
            pid, status = os.waitpid(self.horse, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            if now >= deadline or (self.stop_by is not None and now >= self.stop_by):
                return None
            time.sleep(0.02)

    def _kill_horse(self, why: str) -> None:
        if self.horse is not None:
            log.warning("horse.killed", pid=self.horse, reason=why)
            os.kill(self.horse, signal.SIGKILL)

    def _hand_over_from(self, horse: int, code: int) -> None:
        """Move the dead horse's run on at once: no wait for its lease to expire."""
        name = horse_name(self.options, horse=horse, supervisor=os.getpid())
        why = "its horse was killed while the worker stopped" if code < 0 else "horse died"
        try:
            hand_over_killed(self.redis, self.settings, worker=name, why=why)
        except RedisError as exc:  # the reaper moves it on after its lease instead
            log.warning("worker.handover_failed", error=str(exc))

    def _sweep(self) -> int:
        try:
            if self.horse is not None:  # its heartbeat, even while a job holds it for hours
                self.reaper.liveness.beat(
                    horse_name(self.options, horse=self.horse, supervisor=os.getpid())
                )
            return self.reaper.sweep()
        except RedisError as exc:
            log.warning("reaper.redis_unreachable", error=str(exc))
            return 0

    def _pause_before_restart(self, code: int, lived: float) -> None:
        if lived > HEALTHY_SECONDS:
            self.backoff = 1.0
        log.warning("horse.exited", code=code, restart_in_s=self.backoff)
        until = time.monotonic() + self.backoff
        while not self.stopping and time.monotonic() < until:  # a stop cuts the pause short
            time.sleep(0.05)
        self.backoff = min(self.backoff * 2, 30.0)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        """First signal: the horse hands its run over at its next checkpoint, and is killed
        if it has not exited by the stop deadline. A second: it is killed now. Either way the
        run goes on at once on another worker."""
        first = not self.stopping
        self.stopping = True
        log.info("worker.stopping", signal=signal.Signals(signum).name, warm=first)
        if first:
            self._tell(
                "stopping: the current run is handed over at its next checkpoint;"
                " Ctrl-C again to stop at once"
            )
            margin = min(1.0, self.settings.stop_seconds / 5)  # for the handover after a kill
            self.stop_by = time.monotonic() + self.settings.stop_seconds - margin
            if self.horse is not None:
                os.kill(self.horse, signal.SIGTERM)
        else:
            self._tell("stopping at once; the run resumes from its last checkpoint")
            self._kill_horse("a second stop signal")

    @staticmethod
    def _tell(text: str) -> None:
        """A plain line for the person at the terminal (none when not on one)."""
        if sys.stderr.isatty():
            os.write(sys.stderr.fileno(), f"{text}\n".encode())  # safe in a signal handler


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run a supervised worker in this process until it stops; returns the exit code."""
    return Supervisor(settings, options).run()
