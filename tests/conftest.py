"""Shared fixtures: a throwaway real redis-server per test, settings pointing at it, and
workers in-process (RQ's SimpleWorker in burst mode) or as real processes to kill."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner, Result
from redis import Redis
from rq.serializers import JSONSerializer

from runner.attempt.execute import Executor
from runner.cli.commands import cli
from runner.config import Settings
from runner.connections.redis import EmbeddedRedis
from runner.record import RunRecord
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.index import RunIndex
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.horse import Horse
from runner.worker.relay_process import PROCESS_NAME as RELAY_PROCESS

ROOT = Path(__file__).resolve().parents[1]
TEST_TASKS = "tests.sample_tasks"


@dataclass
class RedisServer:
    """A real redis-server on a unix socket in a temp dir; stop and start it to test faults."""

    server: EmbeddedRedis

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.ensure_started()

    def stop(self) -> None:
        self.server.stop()

    def client(self) -> Redis:
        return Redis.from_url(self.url)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    server = RedisServer(EmbeddedRedis(directory, appendfsync="always"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        redis_url=redis_server.url,
        lease_seconds=2.0,
        tasks_module=TEST_TASKS,
        queues=("default",),
    )


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = redis_server.client()
    yield client
    client.close()  # its sockets, now, not at some later garbage collection


@pytest.fixture
def runs(redis: Redis, settings: Settings) -> Runs:
    return Runs(redis, settings)


@pytest.fixture
def index(redis: Redis, settings: Settings) -> RunIndex:
    return RunIndex(redis, settings)


@pytest.fixture
def enqueue(redis: Redis, settings: Settings) -> Callable[..., Enqueued]:
    registry = load_registry(settings.tasks_module)
    enqueuer = Enqueuer(redis, settings)

    def enqueue(task: str, token: str | None = None, **args: object) -> Enqueued:
        return enqueuer.enqueue(Request(registry.get(task), dict(args), token))

    return enqueue


@pytest.fixture
def work(redis: Redis, settings: Settings) -> Callable[[], None]:
    """Drain the queues in this process with RQ's SimpleWorker, as RQ's own tests do."""
    registry = load_registry(settings.tasks_module)

    def work() -> None:
        horse = Horse(list(settings.queues), connection=redis, serializer=JSONSerializer)
        horse.executor = Executor(redis, settings, registry, worker=horse.name)
        horse.executor.install()
        horse.work(burst=True, logging_level="WARNING")

    return work


def site_settings(settings: Settings, tmp_path: Path) -> Settings:
    """`settings` running the site's own tasks (jobs), with a SQLite store of this test."""
    return replace(
        settings, tasks_module="jobs", queues=("imports", "cron", "default"),
        database_url=f"sqlite:///{tmp_path / 'content.db'}",
    )  # fmt: skip


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RUNNER_HOME": str(settings.home),
        "RUNNER_REDIS_URL": settings.redis_url or "",
        "RUNNER_LEASE_SECONDS": str(settings.lease_seconds),
        "RUNNER_TASKS": settings.tasks_module,
        "RUNNER_QUEUES": ",".join(settings.queues),
        "RUNNER_HISTORY_DELAY_SECONDS": "300",  # tests read finished runs from Redis
        **extra,
    }
    if settings.database_url:
        env["RUNNER_DATABASE_URL"] = settings.database_url
    return env


@dataclass
class WorkerProcess:
    """`runner worker` as a real process in its own session (so its group can be killed)."""

    process: subprocess.Popen[bytes]
    log: Path

    def kill_group(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_group()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*extra_args: str, **env: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        command = [sys.executable, "-m", "runner", "worker", *extra_args]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, env=worker_env(settings, **env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=ROOT,
            )  # fmt: skip
        started.append(WorkerProcess(process, log))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()
        with_group = worker.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(with_group, signal.SIGKILL)


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float = 20.0,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> object:
    """Poll until `predicate()` is truthy; fail the test with `what` after `timeout` seconds.

    `describe`, when given, says what the world looked like at the timeout (for a CI log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    seen = f"\n{describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")


def state_of(runs: Runs, token: str) -> str | None:
    record: RunRecord | None = runs.get(token)
    return record.state if record else None


@pytest.fixture
def drain(
    work: Callable[[], None], redis: Redis, settings: Settings, index: RunIndex
) -> Callable[..., None]:
    """Work in-process until no run is queued, running or retrying (retries included)."""
    from runner.worker.reaper import Reaper

    reaper = Reaper(redis, settings)

    def drain(timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            work()
            reaper.sweep()
            if not any(r.state in ("queued", "running", "retrying") for r in index.runs()):
                return
            time.sleep(0.05)
        raise AssertionError("runs still active after draining")

    return drain


@pytest.fixture
def invoke(settings: Settings) -> Callable[..., Result]:
    """Run the CLI in-process (Click's CliRunner) against this test's Redis and tasks."""
    env = {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@contextlib.contextmanager
def cpu_hogs(count: int = 2) -> Iterator[None]:
    """`count` processes spinning on a CPU each (`yes > /dev/null`) while the block runs: a
    host as loaded as a shared CI machine. Killed at the end, whatever happens."""
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


def horses_of(pid: int) -> list[psutil.Process]:
    """The horses a worker's supervisor forked: its children but the outbox relay and a
    passing subprocess (at import, croniter runs `file -b python` through
    platform.architecture())."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            if child.name() != RELAY_PROCESS and "runner" in child.cmdline():
                found.append(child)
    return found
