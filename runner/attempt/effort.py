"""What an attempt cost, in figures that machine load cannot inflate: its CPU time (the horse
process's `time.process_time()` around the task) and its wall time less the time it spent
runnable but waiting for a CPU (the run-queue wait the kernel keeps in
`/proc/thread-self/schedstat`; where the kernel has none, the wall time). A busy host makes
attempts wait for a CPU, not work longer, so the deploy verdict (runner.monitoring.compare)
reads these instead of the wall-clock duration. Both are written on the run record and counted in
the version's figures by the script that releases the attempt: no round trip of their own."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEDSTAT = Path("/proc/thread-self/schedstat")  # "<on-cpu ns> <run-queue wait ns> <slices>"
FIELDS = ("cpu_seconds", "busy_seconds")  # on the run record: the latest attempt's


# This thread's schedstat file, opened once (an attempt reads it twice), with the process and
# path it was opened for: in a forked child the same thread is another thread of the kernel's.
_open = threading.local()


def run_queue_wait() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU; None without schedstat."""
    try:
        opened = (os.getpid(), SCHEDSTAT)
        if getattr(_open, "opened", None) != opened:
            if getattr(_open, "opened", None) is not None:
                _open.opened = None
                os.close(_open.fd)
            _open.fd = os.open(SCHEDSTAT, os.O_RDONLY)  # this thread's, named at open
            _open.opened = opened
        return int(os.pread(_open.fd, 128, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Effort:
    """An attempt's meter, started when its task starts."""

    cpu: float
    wall: float
    waited: float | None

    @classmethod
    def start(cls) -> Effort:
        return cls(time.process_time(), time.perf_counter(), run_queue_wait())

    def fields(self) -> dict[str, float]:
        """The run fields of what the attempt cost until now: CPU seconds, and wall seconds
        less run-queue wait (the wall seconds where the kernel keeps no schedstat)."""
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        now = run_queue_wait()
        waited = now - self.waited if now is not None and self.waited is not None else 0.0
        return {
            "cpu_seconds": round(max(0.0, cpu), 6),
            "busy_seconds": round(max(0.0, wall - waited), 6),
        }


NO_EFFORT: dict[str, str] = dict.fromkeys(FIELDS, "")  # an attempt whose task never started
