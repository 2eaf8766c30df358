"""Lease renewal: one background thread per process renews the leases of its running attempts,
and the lease is where an attempt learns that it must stop at its next checkpoint."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

import structlog
from redis.exceptions import RedisError

from runner.logs import RunStream
from runner.runs.transitions import Hold, Runs

log = structlog.get_logger("runner.attempt.lease")


class StopReason(StrEnum):
    """Why an attempt stops at its next checkpoint or step boundary (`Run` raises there)."""

    CANCEL = "cancel"  # an operator cancelled the run: it ends `cancelled`
    HANDOVER = "handover"  # its worker is stopping: the run goes on as its next attempt


@dataclass
class Lease:
    """An attempt's hold on its token; `lost` turns true when the renewer sees it go, `stop`
    is set when the attempt must stop at its next checkpoint (a cancel outranks a handover)."""

    token: str
    holder: str
    stream: RunStream | None = None  # its buffered log events, flushed by the renewer too
    renewed_at: float = field(default_factory=time.monotonic)
    lost: bool = False
    stop: StopReason | None = None

    def must_stop(self, reason: StopReason) -> None:
        """Ask the attempt to stop at its next checkpoint (a cancel is never downgraded)."""
        if self.stop != StopReason.CANCEL:
            self.stop = reason


class LeaseRenewer:
    """Renews every held lease each third of the lease period, from one daemon thread, which
    also flushes the attempts' buffered log events within a second.

    A lease is lost when it moved to another attempt, or when no renewal succeeded for a
    whole lease period (Redis unreachable), after which it may have expired. Holding and
    releasing a lease costs no thread start or join, so short jobs stay cheap."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.period = runs.lease_ms / 1000
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stopping = False  # the process is stopping: every attempt hands its run over

    def hold(self, token: str, holder: str, stream: RunStream | None = None) -> Lease:
        """Start renewing `holder`'s lease on `token` (taken just now)."""
        lease = Lease(token, holder, stream)
        if self.stopping:
            lease.must_stop(StopReason.HANDOVER)
        with self._lock:
            self._held[holder] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="leases")
                self._thread.start()
        return lease

    def hand_over_all(self) -> None:
        """The worker is stopping: each attempt, now or later in this process, hands its run
        over at its next checkpoint. Safe in a signal handler (no lock, no I/O)."""
        self.stopping = True
        for lease in list(self._held.values()):
            lease.must_stop(StopReason.HANDOVER)

    def release(self, lease: Lease) -> None:
        """Stop renewing (the attempt ended, or gave up)."""
        with self._lock:
            self._held.pop(lease.holder, None)

    def _run(self) -> None:
        # Stop signals are for the main thread: it runs Python's handlers, and a signal this
        # thread took would leave the main thread blocked where it waits.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        tick = min(0.25, self.period / 3)
        while True:
            time.sleep(tick)
            with self._lock:
                leases = list(self._held.values())
            for lease in leases:
                if lease.stream is not None:
                    lease.stream.flush_if_due()
                if time.monotonic() - lease.renewed_at >= self.period / 3:
                    self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        try:
            hold = self.runs.renew(lease.token, lease.holder)
            if hold != Hold.LOST:
                lease.renewed_at = time.monotonic()
                if hold == Hold.CANCEL:
                    lease.must_stop(StopReason.CANCEL)
            elif lease.holder in self._held:
                self._lose(lease, "lease taken over or expired")
        except RedisError as exc:
            if time.monotonic() - lease.renewed_at > self.period:
                self._lose(lease, f"no renewal for a lease period: {exc}")

    def _lose(self, lease: Lease, reason: str) -> None:
        lease.lost = True
        self.release(lease)
        log.warning("lease.lost", token=lease.token, holder=lease.holder, reason=reason)
