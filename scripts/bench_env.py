"""The bench's environment: one embedded Redis, a temp dir, worker processes, and cleanup.

Everything started here is registered on an ExitStack, so it is stopped on success, error
or Ctrl-C alike: worker process groups are SIGKILLed, redis-server is shut down, temp dirs
and PostgreSQL schemas are dropped.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
import sqlalchemy as sa
from redis import Redis

from runner.config import Settings
from runner.connections.redis import EmbeddedRedis
from scripts.gen_posts import generate_posts, write_feed

ROOT = Path(__file__).resolve().parents[1]
QUEUES = ("imports", "default")
POSTGRES_ENV = "RUNNER_TEST_POSTGRES_URL"


@dataclass
class Proc:
    """A process the bench started in its own session (so its whole group can be killed)."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and horse, or the RQ worker)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def wait(self, timeout: float) -> None:
        """Wait for a burst worker to exit cleanly; raises RuntimeError (with its log) if not."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"worker still running after {timeout:.0f}s: {self.log}") from None
        if code != 0:
            raise RuntimeError(f"worker exited with {code}: {self.tail(1)} (log: {self.log})")

    def tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class BenchEnv:
    """The shared Redis, temp dir and settings of one bench run."""

    stack: contextlib.ExitStack
    tmp: Path
    redis_server: EmbeddedRedis
    redis: Redis
    lease_seconds: float
    procs: list[Proc] = field(default_factory=list)
    feeds: dict[int, Path] = field(default_factory=dict)

    @classmethod
    def open(cls, stack: contextlib.ExitStack, *, lease_seconds: float) -> BenchEnv:
        tmp = Path(tempfile.mkdtemp(prefix="runner-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        server = EmbeddedRedis(tmp / "redis")
        stack.callback(server.stop)
        server.ensure_started()
        env = cls(stack, tmp, server, Redis.from_url(server.url), lease_seconds)
        stack.callback(env.stop_all)
        return env

    @property
    def url(self) -> str:
        return self.redis_server.url

    def settings(self, database_url: str | None = None) -> Settings:
        return Settings(
            home=self.tmp / "home", redis_url=self.url, database_url=database_url,
            lease_seconds=self.lease_seconds, tasks_module="jobs", queues=QUEUES,
        )  # fmt: skip

    def flush(self) -> None:
        self.redis.flushall()
        self.redis.config_resetstat()

    def sqlite_url(self, name: str) -> str:
        """The URL of a fresh SQLite file (any earlier one of that name is deleted)."""
        directory = self.tmp / "db"
        directory.mkdir(exist_ok=True)
        for old in directory.glob(f"{name}.db*"):
            old.unlink()
        return f"sqlite:///{directory / name}.db"

    def drop_sqlite(self, url: str) -> None:
        path = Path(sa.make_url(url).database or "")
        for old in path.parent.glob(f"{path.name}*"):
            old.unlink()

    def feed(self, n: int) -> Path:
        """A JSON Lines feed of `n` generated posts (written once, then reused)."""
        if n not in self.feeds:
            path = self.tmp / f"feed-{n}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                write_feed(generate_posts(n, seed=7), out)
            self.feeds[n] = path
        return self.feeds[n]

    def start(self, command: list[str], env: dict[str, str], name: str) -> Proc:
        """Start a process in its own session, stdout and stderr to a log file."""
        log = self.tmp / "logs" / f"{name}-{len(self.procs)}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(Proc(popen, log))
        return self.procs[-1]

    def runner_worker(
        self, database_url: str, *, burst: bool = True, name: str = "",
        extra: Sequence[str] = (), tasks: str = "jobs", environ: Mapping[str, str] | None = None,
    ) -> Proc:  # fmt: skip
        """`runner worker [--burst] [--name N] [EXTRA...]` with the bench's settings (and the
        task module `tasks`, and `environ`) in its environment."""
        command = [sys.executable, "-m", "runner", "worker"]
        command += ["--burst"] if burst else []
        command += ["--name", name] if name else []
        env = {**self.runner_env(database_url), "RUNNER_TASKS": tasks, **(environ or {})}
        return self.start([*command, *extra], env, name or "runner")

    def rq_worker(self, kind: str, queue: str) -> Proc:
        """A plain RQ worker (`simple`: SimpleWorker, `fork`: Worker) draining `queue`, burst."""
        command = [sys.executable, "-m", "scripts.bench_jobs", self.url, kind, queue]
        return self.start(command, self.base_env(), f"rq-{kind}")

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
        return {**env, "PYTHONPATH": str(ROOT)}

    def runner_env(self, database_url: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "RUNNER_HOME": str(self.tmp / "home"),
            "RUNNER_REDIS_URL": self.url,
            "RUNNER_DATABASE_URL": database_url,
            "RUNNER_TASKS": "jobs",
            "RUNNER_QUEUES": ",".join(QUEUES),
            "RUNNER_LEASE_SECONDS": str(self.lease_seconds),
        }

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.kill()

    def commands_since_reset(self) -> int:
        """Redis commands executed since the last CONFIG RESETSTAT (scripts' inner calls too)."""
        stats = self.redis.info("commandstats")
        ignored = ("cmdstat_config", "cmdstat_info")
        return sum(int(v["calls"]) for k, v in stats.items() if k not in ignored)

    def redis_cpu_seconds(self) -> float:
        """The redis-server's CPU time so far, system and user (`INFO cpu`; RESETSTAT keeps it)."""
        cpu = self.redis.info("cpu")
        return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])

    def usec_by_command(self) -> dict[str, int]:
        """Microseconds spent in each command since the last CONFIG RESETSTAT (`INFO
        commandstats`; a script's inner commands are counted both in it and on their own)."""
        stats = self.redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema on `base`; yields a URL whose search_path is it, then drops it."""
    admin = sa.create_engine(sa.make_url(base).set(drivername="postgresql+psycopg"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def compile_bytecode() -> None:
    """Compile the project's and the installed packages' bytecode before anything is timed,
    so that no side pays for writing .pyc files on its first run (the plain script, a file
    run as `python plain_import.py`, is compiled on each run, as a user runs it)."""
    for directory in (ROOT / "runner", ROOT / "jobs", ROOT / "scripts"):
        compileall.compile_dir(directory, quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["platlib"], quiet=1)


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> object:
    """Poll `predicate` every 20 ms until truthy; raises RuntimeError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def machine(redis: Redis) -> dict[str, str]:
    """What the figures were measured on."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": str(psutil.cpu_count(logical=True)),
        "cpu": model,
        "python": platform.python_version(),
        "rq": metadata.version("rq"),
        "redis-py": metadata.version("redis"),
        "redis-server": str(redis.info("server")["redis_version"]),
        "sqlalchemy": metadata.version("sqlalchemy"),
    }
