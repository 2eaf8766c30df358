"""The worker under real faults: real processes SIGKILLed, paused, and Redis restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import psutil
import pytest
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.tokens import job_id
from runner.worker.liveness import Liveness
from tests.conftest import (
    ROOT,
    RedisServer,
    WorkerProcess,
    horses_of,
    state_of,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow


def executions(redis: Redis, token: str) -> list[tuple[str, int]]:
    """(step, attempt) of every execution the probe recorded, in order."""
    raw = [e.decode().split(":") for e in redis.lrange(f"probe:exec:{token}", 0, -1)]
    return [(step, int(attempt)) for step, attempt, _pid in raw]


def running_on(runs: Runs, token: str, worker: str, attempt: int) -> bool:
    record = runs.get(token)
    return bool(record and record.state == "running" and record.attempt == attempt
                and record.worker.startswith(worker))  # fmt: skip


def horse_of(worker: WorkerProcess) -> psutil.Process:
    """The worker's horse (tests.conftest.horses_of)."""
    return wait_for(lambda: horses_of(worker.process.pid), what="a horse")[0]  # type: ignore[index,no-any-return]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A lease long enough that the reaper lock a killed worker may hold (max(4 sweeps, 5 s),
# runner.worker.reaper) lapses within one lease: recovery is then bounded by the lease alone.
RECOVERY_LEASE = 5.0


@pytest.mark.load_sensitive
def test_sigkill_of_a_worker_group_mid_step_resumes_on_another_worker(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given two live workers, A and B, and a four-step run whose second step is executing
    # on one of them (B was not starting up while the lease ran out: it was alive before)
    recovery = replace(settings, lease_seconds=RECOVERY_LEASE)  # what A and B are started with
    lease = recovery.lease_seconds
    workers = {n: start_worker("--name", n, RUNNER_LEASE_SECONDS=str(lease)) for n in "AB"}
    wait_for(lambda: len(Liveness(redis, recovery).alive()) == 2, timeout=60, what="A and B")
    token = enqueue("slow_steps", steps=4, seconds=1.0).token
    wait_for(lambda: ("s1", 1) in executions(redis, token), what="step s1")
    first = runs.get(token)
    assert first is not None and first.attempt == 1
    victim = workers.pop(first.worker.split(".")[0])
    [(other, survivor)] = workers.items()
    # When the whole process group of the worker running it is SIGKILLed mid-step
    victim.kill_group()
    # Then the other worker resumes the run, as attempt 2
    wait_for(lambda: running_on(runs, token, other, 2), timeout=60, what="attempt 2 elsewhere")
    # within two lease periods of attempt 1's last recorded write (its finish of step s0), as
    # the run itself recorded both (the lease runs out within one period of the kill, and
    # the survivor's reaper looks every quarter of one)
    resumed, s0 = runs.get(token), runs.steps(token)["s0"]
    assert resumed is not None and s0["attempt"] == 1 and resumed.started_at is not None
    leases = (resumed.started_at - s0["finished_at"]) / lease
    print(f"attempt 2 started {leases:.2f} leases after attempt 1's last write")
    assert 0 < leases <= 2
    wait_for(lambda: runs.get(token).state == "succeeded", timeout=30, what="success")  # type: ignore[union-attr]
    # And the finished step s0 never ran again; s1 reran once; the body never overlapped
    assert executions(redis, token) == [("s0", 1), ("s1", 1), ("s1", 2), ("s2", 2), ("s3", 2)]
    assert redis.get(f"probe:overlaps:{token}") is None
    events = [e for _, e in read_events(redis, Keys(), token)]
    assert any(e["event"] == "run.requeued" and e.get("reason") == "lease expired" for e in events)
    assert survivor.process.poll() is None


def test_sigkill_of_only_the_supervisor_takes_its_horse_down(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given a run executing in worker A's horse
    token = enqueue("slow_steps", steps=3, seconds=1.0).token
    a = start_worker("--name", "A")
    wait_for(lambda: ("s1", 1) in executions(redis, token), what="step s1 on A")
    horse = horse_of(a)
    # When only A's supervisor is SIGKILLed (not its process group)
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait(timeout=10)
    # Then the horse dies with it at once, and never runs beside the next attempt
    wait_for(lambda: gone(horse.pid), timeout=5, what="the orphaned horse to die")
    start_worker("--name", "B")
    wait_for(lambda: runs.get(token).state == "succeeded", timeout=30, what="success")  # type: ignore[union-attr]
    assert executions(redis, token) == [("s0", 1), ("s1", 1), ("s1", 2), ("s2", 2)]
    assert redis.get(f"probe:overlaps:{token}") is None


def test_a_sigkilled_horse_is_replaced_and_the_replacement_resumes_its_run(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given a run executing in the horse of worker A, the only worker
    token = enqueue("slow_steps", steps=3, seconds=1.0).token
    a = start_worker("--name", "A")
    wait_for(lambda: ("s1", 1) in executions(redis, token), what="step s1 on A")
    victim = horse_of(a)
    # When that horse alone is SIGKILLed (its supervisor lives on)
    victim.kill()
    # Then the run succeeds in attempt 2: only a new horse of A's can have run it
    wait_for(lambda: state_of(runs, token) == "succeeded", timeout=30, what="success")
    record = runs.get(token)
    assert record is not None and record.attempt == 2
    assert record.worker.startswith("A.horse")
    replacement = int(record.worker.rsplit(".horse", 1)[1])
    assert replacement != victim.pid
    assert psutil.Process(replacement).ppid() == a.process.pid  # forked by A's supervisor
    pids = {int(e.decode().rsplit(":", 1)[1]) for e in redis.lrange(f"probe:exec:{token}", 0, -1)
            if e.decode().split(":")[1] == "2"}  # fmt: skip
    assert pids == {replacement}
    assert a.process.poll() is None


def test_an_attempt_paused_past_its_lease_cannot_write_progress(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given a checkpointing run on worker A, which we freeze (SIGSTOP) mid-run
    token = enqueue("counting", items=40, seconds=0.1).token
    a = start_worker("--name", "A")
    wait_for(lambda: (runs.get(token).cursor or 0) >= 3, what="progress on A")  # type: ignore[union-attr]
    horse = horse_of(a)
    horse.suspend()
    # When its lease expires and worker B takes the run over and checkpoints
    start_worker("--name", "B")
    wait_for(lambda: running_on(runs, token, "B", 2), timeout=30, what="attempt 2 on B")
    wait_for(
        lambda: b"2:" in b"".join(redis.lrange(f"probe:ckpt:{token}", 0, -1)), what="B's checkpoint"
    )
    # And A wakes up (SIGCONT) in the middle of its work
    horse.resume()
    wait_for(lambda: runs.get(token).state == "succeeded", timeout=60, what="success")  # type: ignore[union-attr]
    # Then no checkpoint of attempt 1 landed after attempt 2 began from A's last one (the
    # task notes a checkpoint after writing it: A, stopped in between, may note its last
    # write late, but nothing past it)
    ckpts = [c.decode() for c in redis.lrange(f"probe:ckpt:{token}", 0, -1)]
    first_of_2 = next(i for i, c in enumerate(ckpts) if c.startswith("2:"))
    resumed_from = int(ckpts[first_of_2].split(":")[1]) - 1
    late = [c for c in ckpts[first_of_2:] if c.startswith("1:")]
    assert all(int(c.split(":")[1]) <= resumed_from for c in late), (late, resumed_from)
    # And the run's progress is exact, and A's attempt said it gave up
    record = runs.get(token)
    assert record is not None and record.cursor == 40 and record.counters == {"done": 40}
    wait_for(lambda: "attempt.abandoned" in a.output(), timeout=10, what="A to abandon")


@pytest.mark.parametrize("queues", ["default", "other,default"])
def test_a_redis_outage_of_five_seconds_mid_run_is_survived(
    queues: str,
    settings: Settings,
    redis_server: RedisServer,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
) -> None:
    # Given a run checkpointing on a worker whose lease outlasts the outage
    token = enqueue("counting", items=30, seconds=0.2, probed=False).token
    worker = start_worker(RUNNER_LEASE_SECONDS="15", RUNNER_QUEUES=queues)
    wait_for(lambda: (runs.get(token).cursor or 0) >= 3, what="progress")  # type: ignore[union-attr]
    # When Redis goes away for five seconds and comes back (its AOF kept the data)
    redis_server.stop()
    time.sleep(5)
    redis_server.start()
    # Then the worker is still up and the same attempt finishes the run exactly
    wait_for(lambda: runs.get(token).state == "succeeded", timeout=60, what="success")  # type: ignore[union-attr]
    record = runs.get(token)
    assert record is not None and record.attempt == 1 and record.counters == {"done": 30}
    assert worker.process.poll() is None
    assert "redis.unreachable" in worker.output()
    # And it goes on taking work from the restarted server (whose script cache is empty)
    after = enqueue("counting", items=2, seconds=0.0, probed=False).token
    wait_for(lambda: state_of(runs, after) == "succeeded", timeout=30, what="the next run")


def blocked_in_dequeue(redis: Redis) -> bool:
    """Whether a horse is blocked in BLMOVE, waiting for a job (Redis's client list)."""
    return any(c["cmd"] == "blmove" and "b" in c["flags"] for c in redis.client_list())


def test_a_job_taken_by_a_worker_that_dies_before_starting_it_runs_once_elsewhere(
    settings: Settings,
    enqueue: Callable[..., Enqueued],
    start_worker: Callable[..., WorkerProcess],
    runs: Runs,
    redis: Redis,
) -> None:
    # Given worker A's horse waiting in Redis for a job, frozen there (SIGSTOP)
    a = start_worker("--name", "A")
    horse = horse_of(a)
    wait_for(lambda: blocked_in_dequeue(redis), what="A's horse to wait for work")
    horse.suspend()
    # When a job arrives, Redis hands it to the frozen horse, and A dies before starting it
    token = enqueue("counting", items=3, seconds=0.01).token
    wait_for(lambda: redis.llen("rq:queue:default:intermediate") == 1, what="the hand-over")
    assert redis.llen("rq:queue:default") == 0
    a.kill_group()
    # Then another worker gives the run its next attempt, and the body runs exactly once
    start_worker("--name", "B")
    wait_for(lambda: runs.get(token).state == "succeeded", timeout=30, what="success")  # type: ignore[union-attr]
    record = runs.get(token)
    assert record is not None and record.attempt == 2 and record.counters == {"done": 3}
    assert [e.decode().split(":")[1] for e in redis.lrange(f"probe:exec:{token}", 0, -1)] == [
        "2", "2", "2"
    ]  # fmt: skip
    events = [e for _, e in read_events(redis, Keys(), token)]
    requeued = [e for e in events if e["event"] == "run.requeued"]
    assert [e["reason"] for e in requeued] == ["its worker died before starting it"]
    assert redis.llen("rq:queue:default:intermediate") == 0
    assert not redis.exists(f"rq:job:{job_id(token, 1)}")  # the lost job is gone for good


# The site's tasks, and the default lease: with the tests' 2 s lease, runs queued behind a
# loaded worker for longer than a lease are inspected by its reaper (is the job still in its
# queue?): commands per job that a real deployment's lease does not cost.
QUIET = {"RUNNER_TASKS": "jobs", "RUNNER_QUEUES": "imports,default", "RUNNER_LEASE_SECONDS": "30"}


def total_commands(redis: Redis) -> int:
    stats: dict[str, dict[str, int]] = redis.info("commandstats")  # type: ignore[assignment]
    return sum(stat["calls"] for stat in stats.values())


def commands_of_a_burst(
    redis: Redis, settings: Settings, start_worker: Callable[..., WorkerProcess], jobs: range
) -> tuple[int, float]:
    """Redis commands (INFO commandstats: Lua's inner calls included) of `runner worker
    --burst` over `jobs` runs of the site's `noop` (one step), on the default queues, and the
    seconds the worker lived."""
    registry = load_registry("jobs")
    requests = [Request(registry.get("noop"), {"i": i}, None) for i in jobs]
    Enqueuer(redis, settings).enqueue_many(requests)
    redis.config_resetstat()
    began = time.monotonic()
    worker = start_worker("--burst", **QUIET)
    assert worker.process.wait(timeout=120) == 0, worker.output()
    return total_commands(redis), time.monotonic() - began


def commands_per_second_by_the_clock(
    redis: Redis, start_worker: Callable[..., WorkerProcess], *, seconds: float = 5.0
) -> float:
    """Commands a live worker sends with no job to do (heartbeats, its reaper, its relay's
    polls), per second: what a longer burst adds by taking longer, not by its jobs."""
    worker = start_worker(**QUIET)
    wait_for(lambda: bool(Liveness(redis, Settings()).alive()), timeout=60, what="a live horse")
    time.sleep(1.0)  # past its start
    redis.config_resetstat()
    began = time.monotonic()
    time.sleep(seconds)
    calls, elapsed = total_commands(redis), time.monotonic() - began
    worker.stop()
    return calls / elapsed


@pytest.mark.slow
def test_a_no_op_job_costs_at_most_45_redis_commands(
    redis: Redis, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    # DESIGN.md "Decisions" 1-2: RQ's records 12, figures 8, the runner's own 25 (the bench's
    # no-op job); a worker's start and stop cancel out between a burst of 5 and one of 85,
    # both after a first burst has loaded the scripts. What a worker does by the clock (its
    # heartbeats, reaper and relay polls) grows with how long the longer burst took, on a
    # loaded machine by seconds: it is measured on an idle worker and taken out, per second.
    commands_of_a_burst(redis, settings, start_worker, range(5))
    few, few_seconds = commands_of_a_burst(redis, settings, start_worker, range(5, 10))
    many, many_seconds = commands_of_a_burst(redis, settings, start_worker, range(10, 95))
    clock = commands_per_second_by_the_clock(redis, start_worker)
    by_the_clock = clock * max(0.0, many_seconds - few_seconds)
    per_job = (many - few - by_the_clock) / 80
    assert per_job <= 45, (few, many, round(clock, 1), round(many_seconds - few_seconds, 2))
    assert per_job >= 20, "the count must see the jobs (RQ's records alone are a dozen)"


def in_a_child(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`code` run by a Python child of this process (`sys.argv[1:]` are `args`)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


DIE_WITH_PARENT = """
import sys
from runner.worker.horse import die_with_parent
die_with_parent(int(sys.argv[1]))
print("alive")
"""


def test_a_horse_whose_supervisor_is_already_gone_exits_at_once() -> None:
    # A horse is told its supervisor's pid; one whose parent is no longer that pid (the
    # supervisor died while it forked: it was handed to init) must not work
    orphan = in_a_child(DIE_WITH_PARENT, "1")
    assert orphan.returncode != 0 and "alive" not in orphan.stdout
    # while a horse whose supervisor is there goes on
    child = in_a_child(DIE_WITH_PARENT, str(os.getpid()))
    assert child.returncode == 0 and child.stdout == "alive\n", child.stderr


BURST_HORSE = """
import os, sys
from runner.config import Settings
from runner.worker.horse import WorkerOptions, horse_main
options = WorkerOptions(queues=("default",), burst=True, name="solo")
sys.exit(horse_main(Settings.from_env(), options, os.getppid()))
"""


def test_a_burst_horse_exits_0_once_its_queue_is_empty_with_no_rq_scheduler(
    redis: Redis, settings: Settings
) -> None:
    # Given two queued runs
    enqueuer, registry = Enqueuer(redis, settings), load_registry(settings.tasks_module)
    tokens = [enqueuer.enqueue(Request(registry.get("noop"), {})).token for _ in range(2)]
    # When a horse works in burst mode
    done = in_a_child(BURST_HORSE, env=worker_env(settings))
    # Then it ran both and returned 0 (its supervisor counts its slot done, not dead)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [state_of(Runs(redis, settings), t) for t in tokens] == ["succeeded"] * 2
    # And it left scheduling to the runner's reaper: RQ's scheduler never took its lock
    assert redis.keys("rq:scheduler*") == []


def test_a_working_horse_registers_its_code_version_and_runs_no_rq_scheduler(
    redis: Redis, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker of code version v7 that has run a job (its horse well into its loop)
    enqueued = Enqueuer(redis, settings).enqueue(
        Request(load_registry(settings.tasks_module).get("noop"), {})
    )
    worker = start_worker(RUNNER_CODE_VERSION="v7")
    wait_for(lambda: state_of(Runs(redis, settings), enqueued.token) == "succeeded",
             timeout=60, what="the run done")  # fmt: skip
    # Then its horse's RQ registration carries that version (health's deploy comparison)
    assert [w.version for w in Liveness(redis, settings).registered()] == ["v7"]
    # And it started no RQ scheduler (retries and scheduled runs are the reaper's): no
    # scheduler lock in Redis, no scheduler process under the horse
    assert redis.keys("rq:scheduler*") == []
    assert horses_of(worker.process.pid)
    assert all(horse.children() == [] for horse in horses_of(worker.process.pid))
