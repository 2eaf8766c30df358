"""The bench's own tasks (`RUNNER_TASKS=scripts.bench_tasks`): the built-in `noop`, and an
I/O-bound stand-in that sleeps 50 ms in one step, for the `--concurrency` measurement."""

from __future__ import annotations

import time
from typing import Any

from runner import Run, TaskRegistry

MODULE = "scripts.bench_tasks"
SLEEP_SECONDS = 0.05

registry = TaskRegistry()


@registry.task("sleep_50ms", queue="default", timeout=60)
def sleep_50ms(run: Run, **kwargs: Any) -> dict[str, Any]:
    """Wait 50 ms in a step, as a URL import waits on the network."""

    def wait() -> dict[str, Any]:
        time.sleep(SLEEP_SECONDS)
        return {"slept_s": SLEEP_SECONDS, **kwargs}

    return run.step("sleep", wait)
