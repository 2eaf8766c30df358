"""Tasks for the runner's tests. They record what they do in Redis (the job's own
connection), so a test can count executions and detect two attempts running at once."""

from __future__ import annotations

import os
import time
from typing import Any

from redis import Redis
from rq import get_current_job

from runner.context import Run
from runner.errors import PermanentError, TransientError
from runner.tasks import RetryPolicy, TaskRegistry

registry = TaskRegistry()
FAST_RETRY = RetryPolicy(backoff_seconds=0.05, backoff_cap_seconds=0.2)


def _redis() -> Redis:
    job = get_current_job()
    assert job is not None
    return job.connection


def probe(run: Run, step: str, seconds: float) -> None:
    """Record one execution of `step`; count overlaps of two attempts of the same token."""
    r = _redis()
    r.rpush(f"probe:exec:{run.token}", f"{step}:{run.attempt}:{os.getpid()}")
    if r.incr(f"probe:active:{run.token}") > 1:
        r.incr(f"probe:overlaps:{run.token}")
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        r.decr(f"probe:active:{run.token}")


@registry.task(retry=FAST_RETRY)
def slow_steps(run: Run, *, steps: int = 3, seconds: float = 0.5) -> dict[str, Any]:
    """`steps` steps of `seconds` each, then a checkpointed loop: the crash tests' victim."""
    for i in range(steps):
        run.step(f"s{i}", lambda i=i: probe(run, f"s{i}", seconds) or i)
    return {"steps": steps}


@registry.task(retry=FAST_RETRY)
def counting(run: Run, *, items: int = 10, seconds: float = 0.05) -> dict[str, Any]:
    """A long step with a checkpoint after each item; resumes from the cursor."""
    start = run.cursor or 0
    for i in range(start, items):
        probe(run, f"item{i}", seconds)
        run.checkpoint(cursor=i + 1, counters={"done": i + 1}, total=items)
    return {"done": items, "resumed_from": start}


@registry.task(retry=FAST_RETRY)
def flaky(run: Run, *, failures: int = 2, mode: str = "attempt") -> str:
    """Fails its first `failures` attempts (mode 'attempt') or step tries (mode 'step')."""
    r = _redis()
    run.step("before", lambda: "ok")

    def fragile() -> str:
        if r.incr(f"probe:tries:{run.token}") <= failures:
            if mode == "step":
                raise TransientError("connection refused (simulated)")
            raise RuntimeError("boom (simulated)")
        return "ok"

    return run.step("fragile", fragile)


@registry.task(retry=FAST_RETRY)
def broken(run: Run, *, permanent: bool = True) -> None:
    """Always fails: permanently, or with an error retrying cannot fix."""
    run.step("first", lambda: 1)
    if permanent:
        raise PermanentError("the source does not exist (simulated)")
    raise RuntimeError("still broken (simulated)")
