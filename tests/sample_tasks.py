"""Tasks for the runner's tests. They record what they do in Redis (the job's own
connection), so a test can count executions and detect two attempts running at once."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
from redis import Redis
from rq import get_current_job

from runner.attempt.context import Run
from runner.errors import PermanentError, TransientError
from runner.keys import Keys
from runner.tasks import Limit, RetryPolicy, TaskRegistry

registry = TaskRegistry()
FAST_RETRY = RetryPolicy(backoff_seconds=0.05, backoff_cap_seconds=0.2)


def _redis() -> Redis:
    job = get_current_job()
    assert job is not None
    return job.connection


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def probe(run: Run, step: str, seconds: float) -> None:
    """Record one execution of `step`, and count every moment another live process was
    executing the same token's body too (a SIGKILLed process is not live)."""
    r = _redis()
    me = os.getpid()
    active = f"probe:active:{run.token}"
    r.rpush(f"probe:exec:{run.token}", f"{step}:{run.attempt}:{me}")
    r.sadd(active, me)
    try:
        deadline = time.monotonic() + seconds
        while True:
            others = [int(p) for p in r.smembers(active) if int(p) != me]
            if any(_alive(p) for p in others):
                r.incr(f"probe:overlaps:{run.token}")
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    finally:
        r.srem(active, me)


@registry.task(retry=FAST_RETRY)
def slow_steps(run: Run, *, steps: int = 3, seconds: float = 0.5) -> dict[str, Any]:
    """`steps` steps of `seconds` each, then a checkpointed loop: the crash tests' victim."""
    for i in range(steps):
        run.step(f"s{i}", lambda i=i: probe(run, f"s{i}", seconds) or i)
    return {"steps": steps}


@registry.task(retry=FAST_RETRY)
def counting(
    run: Run, *, items: int = 10, seconds: float = 0.05, probed: bool = True
) -> dict[str, Any]:
    """A long step with a checkpoint after each item; resumes from the cursor. A Redis flag
    `probe:fail:<token>` = i makes item i fail permanently (to test reruns)."""
    start = run.cursor or 0
    for i in range(start, items):
        if probed:
            probe(run, f"item{i}", seconds)
            fail_at = _redis().get(f"probe:fail:{run.token}")
            if fail_at is not None and int(fail_at) == i:
                raise PermanentError(f"item {i} is bad (simulated)")
        else:
            time.sleep(seconds)
        run.checkpoint(cursor=i + 1, counters={"done": i + 1}, total=items)
        if probed:
            _redis().rpush(f"probe:ckpt:{run.token}", f"{run.attempt}:{i + 1}")
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
def outlived(run: Run) -> str:
    """Finishes its step, then loses its lease (as to an attempt that took over meanwhile)."""
    run.step("work", lambda: "done")
    _redis().set(Keys(run.settings.prefix).lease(run.token), "a-newer-attempt")
    return "too late"


@registry.task(retry=FAST_RETRY)
def broken(run: Run, *, permanent: bool = True) -> None:
    """Always fails: permanently, or with an error retrying cannot fix."""
    run.step("first", lambda: 1)
    if permanent:
        raise PermanentError("the source does not exist (simulated)")
    raise RuntimeError("still broken (simulated)")


@registry.task()
def noop(run: Run, **kwargs: Any) -> None:
    """Does nothing, whatever its arguments: what the runner itself costs per job."""


def _host(args: Any) -> str:
    return str(args["host"])


@registry.task(limit=Limit(key=_host, concurrency=2))
def limited(run: Run, *, host: str, seconds: float = 0.0) -> str:
    """At most two runs of one host at once: a step that takes `seconds`."""
    return run.step("fetch", lambda: (time.sleep(seconds), host)[1])


@registry.task(limit=Limit(key=_host, rate=5, per=10.0))
def rated(run: Run, *, host: str) -> str:
    """At most five starts of one host in any ten seconds."""
    return run.step("fetch", lambda: host)


@registry.task()
def sleepy(run: Run, *, seconds: float = 1.0) -> None:
    """Busy for `seconds` without a checkpoint (its worker must still count as alive)."""
    time.sleep(seconds)


@registry.task(retry=RetryPolicy(attempts=1))
def deployed(run: Run, *, n: int = 0) -> int:
    """Behaves as the Redis hash `probe:behaviour` says (the code of the version deployed):
    sleep `seconds`, burn `cpu` seconds of CPU time, and fail runs whose n is a multiple of
    `fail_every` (0: never)."""
    behaviour = {k.decode(): float(v) for k, v in _redis().hgetall("probe:behaviour").items()}
    time.sleep(behaviour.get("seconds", 0.0))
    burn_until = time.process_time() + behaviour.get("cpu", 0.0)  # a CPU regression
    while time.process_time() < burn_until:
        pass
    every = int(behaviour.get("fail_every", 0))
    if every and n % every == 0:
        raise RuntimeError(f"run {n} broke (simulated)")
    return n


@registry.task(retry=FAST_RETRY)
def greet(run: Run, *, name: str, loud: bool = False) -> str:
    """A task with a required argument: for the argument checks of enqueue."""
    return name.upper() if loud else name


@registry.task(retry=FAST_RETRY)
def spawn(run: Run, **child_args: Any) -> str:
    """Enqueues `greet` with its own arguments; returns the error it got, if any."""
    from runner.errors import InvalidArguments

    try:
        return run.enqueue("greet", child_args).token
    except InvalidArguments as exc:
        return f"refused: {exc}"


@registry.task(retry=FAST_RETRY)
def shaky(run: Run) -> str:
    """Its first attempt fails with a TransientError (outside any step); the second succeeds."""
    if _redis().incr(f"probe:tries:{run.token}") == 1:
        raise TransientError("connection reset (simulated)")
    return "ok"


@registry.task(retry=FAST_RETRY)
def stubborn(run: Run, *, seconds: float = 60.0) -> dict[str, Any]:
    """One long step that never checkpoints on its first attempt (a later one is quick): the
    task a stopping worker must kill at its deadline."""

    def long() -> int:
        _redis().rpush(f"probe:exec:{run.token}", f"long:{run.attempt}:{os.getpid()}")
        time.sleep(seconds if run.attempt == 1 else 0.05)
        return run.attempt

    run.step("long", long)
    return {"attempt": run.attempt}


@registry.task(retry=FAST_RETRY)
def loud_failure(run: Run, *, size: int = 5_000_000, text: str = "E") -> None:
    """Fails for good with an error message of `text` repeated `size` times."""
    raise PermanentError(text * size)
