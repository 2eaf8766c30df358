"""The lease keeper: renews an attempt's lease in the background while the task runs."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import structlog
from redis.exceptions import RedisError

from runner.runs import Runs

log = structlog.get_logger("runner.lease")


class LeaseKeeper:
    """Renews `holder`'s lease on `token` every third of the lease period; notices its loss.

    `lost` turns true when the lease moved to another attempt, or when no renewal succeeded
    for a whole lease period (Redis unreachable), after which it may have expired."""

    def __init__(self, runs: Runs, token: str, holder: str) -> None:
        self.runs = runs
        self.token = token
        self.holder = holder
        self.period = runs.lease_ms / 1000
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _renew_until_stopped(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self.period / 3):
            try:
                if not self.runs.renew(self.token, self.holder):
                    self._mark_lost("lease taken over or expired")
                    return
                renewed_at = time.monotonic()
            except RedisError as exc:
                if time.monotonic() - renewed_at > self.period:
                    self._mark_lost(f"no renewal for a lease period: {exc}")
                    return

    def _mark_lost(self, reason: str) -> None:
        self.lost = True
        log.warning("lease.lost", token=self.token, holder=self.holder, reason=reason)
