"""The outbox relay's process: a child of a worker's supervisor (runner.worker.supervisor), forked
while the supervisor has no other thread, so the fork is safe; light to import (the relay's
database stack is imported in the child only)."""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path

import structlog

from runner.config import Settings

log = structlog.get_logger("runner.worker.relay")
PROCESS_NAME = "runner-relay"  # what `ps`, `top` and psutil call it, beside the horses


class RelayProcess:
    """The relay as a child of a worker's supervisor: forked while the supervisor has no other
    thread (fork-safe), started again when it dies, stopped with the supervisor."""

    RESTART_SECONDS = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid: int | None = None
        self.restart_at = 0.0

    def keep(self) -> None:
        """Start the relay, or start it again if it died (at most every RESTART_SECONDS)."""
        if self.pid is not None:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if not pid:
                return
            self.pid = None
            log.warning("outbox.relay_died")
        if time.monotonic() < self.restart_at:
            return
        self.restart_at = time.monotonic() + self.RESTART_SECONDS
        self.pid = self._fork()

    def stop(self) -> None:
        if self.pid is not None:
            with suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)  # a relay killed midway is relayed again
                os.waitpid(self.pid, 0)
            self.pid = None

    def _fork(self) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            os.setpgrp()  # the terminal's Ctrl-C is the supervisor's to handle
            _name_process(PROCESS_NAME)
            code = 1
            try:
                from runner.worker.relay import relay_main

                code = relay_main(self.settings, parent)
            except BaseException as exc:  # never return into the supervisor's loop
                log.error("outbox.relay_crashed", error=repr(exc))
            finally:
                os._exit(code)
        return pid


def _name_process(name: str) -> None:
    """Name this process (Linux's /proc/self/comm, 15 bytes): an operator's `ps -o comm` and a
    test tell the relay from the horses, which are forked from the same supervisor."""
    with suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])
