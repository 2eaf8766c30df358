"""The supervisor: one process that keeps N horses alive, runs the reaper, and stops them all.

`runner worker --concurrency N` keeps N horses (processes, each RQ's in-process worker with
every guarantee of its own: lease, fencing, delivery, handover) under one supervisor, like
`rq worker-pool`, for I/O-bound tasks such as URL imports. The supervisor runs one reaper for
all of them and beats for each (liveness counts horses: what executes).

A horse that dies takes down only itself: the others go on, the supervisor starts a new one
in its place (with backoff if it keeps dying), and its run resumes from its checkpoint once
its lease expires, like any crash. Every horse dies with the supervisor (PR_SET_PDEATHSIG).

Stopping (SIGTERM or SIGINT, to the supervisor alone or to every process at once): every
horse takes no more jobs and hands its run over at its next checkpoint or step boundary. A
horse still busy `RUNNER_STOP_SECONDS` after the signal, or at a second signal, is killed,
and the supervisor hands its run over itself (runner.worker.handover).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from types import FrameType

import structlog
from redis.exceptions import RedisError

from runner.config import Settings
from runner.connections.redis import connect
from runner.worker.handover import hand_over_killed
from runner.worker.horse import STOP_SIGNALS, Horse, WorkerOptions, horse_main, horse_name
from runner.worker.reaper import Reaper
from runner.worker.relay_process import RelayProcess

log = structlog.get_logger("runner.worker.horse")
HEALTHY_SECONDS = 30.0  # a horse that lived this long resets its slot's restart backoff
POLL_SECONDS = 0.02


@dataclass
class Slot:
    """One of the supervisor's N places for a horse: the horse in it, and when to refill it."""

    pid: int | None = None
    started: float = 0.0
    restart_at: float = 0.0  # monotonic; a dead horse is replaced from then on
    backoff: float = 1.0
    done: bool = False  # burst mode: its horse found the queues empty


class Supervisor:
    """Keeps `options.concurrency` horses running, restarts each with backoff when it dies,
    sweeps with the reaper, and stops within `RUNNER_STOP_SECONDS` of a SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.slots = [Slot() for _ in range(options.concurrency)]
        self.stopping = False
        self.stop_by: float | None = None  # monotonic time every horse must be gone by
        self.redis = connect(settings, check=False)
        self.reaper = Reaper(self.redis, settings)
        self.relay = RelayProcess(settings)  # the outbox's relay: database side-work

    @property
    def horses(self) -> list[int]:
        return [slot.pid for slot in self.slots if slot.pid is not None]

    def run(self) -> int:
        """Work until stopped (SIGTERM/SIGINT) or, in burst mode, until nothing is left."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        name = self.options.worker_name()
        log.info("worker.started", name=name, queues=self.options.queues,
                 concurrency=self.options.concurrency)  # fmt: skip
        horses = f", {len(self.slots)} horses" if len(self.slots) > 1 else ""
        self._tell(
            f"worker {name} on {', '.join(self.options.queues)}{horses}."
            + self._say(
                " Ctrl-C: hand the current run over at its next checkpoint, then stop. Ctrl-C"
                " twice: stop at once (either way the run goes on from its last checkpoint on"
                " another worker, at once).",
                " Ctrl-C: hand the current runs over at their next checkpoints, then stop."
                " Ctrl-C twice: stop at once (either way the runs go on from their last"
                " checkpoints on other workers, at once).",
            )
        )
        while not (self.stopping and not self.horses):
            if not self.stopping:
                self._fill_slots()
                self.relay.keep()
            moved = 0 if self.stopping else self._sweep()
            for slot, code in self._wait(self.settings.reaper_interval):
                self._ended(slot, code)
            if self.stop_by is not None and time.monotonic() >= self.stop_by:
                self.stop_by = None  # once: then wait for the killed horses to be reaped
                self._kill_all("the stop deadline passed before a checkpoint")
            if self._burst_finished(moved):
                break
        self.relay.stop()
        log.info("worker.stopped", name=name)
        return 0

    def _fill_slots(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and not slot.done and now >= slot.restart_at:
                slot.pid, slot.started = self._spawn(), now

    def _burst_finished(self, moved: int) -> bool:
        """Burst mode: every horse found the queues empty and the reaper moves nothing more
        in (else the slots are refilled for what it moved)."""
        if self.stopping or not self.options.burst or not all(s.done for s in self.slots):
            return False
        if not moved and not self._sweep():
            return True
        for slot in self.slots:
            slot.done = False
        return False

    def _ended(self, slot: Slot, code: int) -> None:
        pid, slot.pid = slot.pid, None
        assert pid is not None
        if self.stopping:
            if code != 0:  # killed (deadline, second signal) or crashed while stopping
                self._hand_over_from(pid, code)
            return
        if code == 0 and self.options.burst:
            slot.done = True
            return
        lived = time.monotonic() - slot.started
        if lived > HEALTHY_SECONDS:
            slot.backoff = 1.0
        log.warning("horse.exited", pid=pid, code=code, restart_in_s=slot.backoff)
        slot.restart_at = time.monotonic() + slot.backoff
        slot.backoff = min(slot.backoff * 2, 30.0)

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

    def _wait(self, seconds: float) -> list[tuple[Slot, int]]:
        """(slot, exit code) of the horses that exited, as soon as one has; none after
        `seconds`, at the stop deadline, or when an empty slot is due to be refilled."""
        deadline = time.monotonic() + seconds
        while True:
            ended = []
            for slot in self.slots:
                if slot.pid is not None:
                    pid, status = os.waitpid(slot.pid, os.WNOHANG)
                    if pid:
                        ended.append((slot, os.waitstatus_to_exitcode(status)))
            now = time.monotonic()
            due = not self.stopping and any(
                s.pid is None and not s.done and now >= s.restart_at for s in self.slots
            )
            at_stop = self.stop_by is not None and now >= self.stop_by
            if ended or due or at_stop or now >= deadline:
                return ended
            time.sleep(POLL_SECONDS)

    def _kill_all(self, why: str) -> None:
        for pid in self.horses:
            log.warning("horse.killed", pid=pid, reason=why)
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

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
            for pid in self.horses:  # their heartbeats, even while a job holds one for hours
                self.reaper.liveness.beat(
                    horse_name(self.options, horse=pid, supervisor=os.getpid())
                )
            return self.reaper.sweep()
        except RedisError as exc:
            log.warning("reaper.redis_unreachable", error=str(exc))
            return 0

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        """First signal: every horse hands its run over at its next checkpoint, and is killed
        if it has not exited by the stop deadline. A second: they are killed now. Either way
        the runs go on at once on another worker."""
        first = not self.stopping
        self.stopping = True
        log.info("worker.stopping", signal=signal.Signals(signum).name, warm=first)
        if first:
            self._tell(
                self._say(
                    "stopping: the current run is handed over at its next checkpoint;",
                    "stopping: the current runs are handed over at their next checkpoints;",
                )
                + " Ctrl-C again to stop at once"
            )
            margin = min(1.0, self.settings.stop_seconds / 5)  # for the handover after a kill
            self.stop_by = time.monotonic() + self.settings.stop_seconds - margin
            for pid in self.horses:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        else:
            self._tell(
                self._say(
                    "stopping at once; the run resumes from its last checkpoint",
                    "stopping at once; the runs resume from their last checkpoints",
                )
            )
            self._kill_all("a second stop signal")

    def _say(self, one: str, many: str) -> str:
        """`one` for a worker of one horse, `many` for one of several."""
        return one if len(self.slots) == 1 else many

    @staticmethod
    def _tell(text: str) -> None:
        """A plain line for the person at the terminal (none when not on one)."""
        if sys.stderr.isatty():
            os.write(sys.stderr.fileno(), f"{text}\n".encode())  # safe in a signal handler


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run a supervised worker in this process until it stops; returns the exit code."""
    return Supervisor(settings, options).run()
