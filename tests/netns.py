"""Several hosts on one machine, for partition tests: network namespaces joined by veth pairs.

A "data" namespace runs its own redis-server and its own PostgreSQL cluster (initdb and
postgres as the `postgres` user); two worker namespaces reach them over TCP across their veth;
the test itself (root namespace) reaches them across a third veth. Every name carries a random
id, so two test runs on one machine never collide, and `hosts()` removes every namespace,
process and data directory it made, whatever happened.

Addresses, in 10.A.B.0/24 (A, B random): Redis 10.A.B.1 and PostgreSQL 10.A.B.2 on the data
namespace's loopback, veth pairs data-w1 .9/.10, data-w2 .13/.14, data-root .17/.18.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError

from runner.connections.redis import redis_server_binary

WORKERS = ("w1", "w2")
_PAIRS = {"w1": 8, "w2": 12, "root": 16}  # each pair's /30: data side +1, far side +2
_NOWHERE = "198.51.100.9"  # a next hop no host has (TEST-NET-2): the black hole


def unavailable() -> str:
    """Why namespaces cannot be used here ('' when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run initdb and postgres as"
    return ""


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Hosts:
    """The namespaces, their addresses, and the processes started in them."""

    id: str
    base: str  # "10.A.B"
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"rt-{self.id}-{host}"

    def veth(self, host: str, side: str) -> str:
        return f"rt{self.id}{host[-2:]}{side}"  # at most 15 characters

    @property
    def redis_ip(self) -> str:
        return f"{self.base}.1"

    @property
    def postgres_ip(self) -> str:
        return f"{self.base}.2"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_ip}:6379/0"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.postgres_ip}:5432/postgres"

    def address(self, host: str) -> str:
        """The address of a worker (or the root side) on its veth."""
        return f"{self.base}.{_PAIRS[host] + 2}"

    def spawn(
        self, host: str, command: Sequence[str], *, env: dict[str, str] | None = None,
        log: Path | None = None, user: str | None = None,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start `command` inside `host`'s namespace, in its own process group."""
        prefix = ["ip", "netns", "exec", self.ns(host)]
        if user:
            prefix += ["runuser", "-u", user, "--"]
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        process = subprocess.Popen(
            [*prefix, *command], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def run_in(self, host: str, command: Sequence[str], *, timeout: float = 10) -> int:
        """Run `command` in `host`'s namespace; its exit code (124 after `timeout` s)."""
        try:
            done = subprocess.run(
                ["ip", "netns", "exec", self.ns(host), *command],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return 124
        return done.returncode

    def cut(self, host: str) -> None:
        """Take `host`'s link down: it reaches nothing, and nothing reaches it."""
        ip("link", "set", self.veth(host, "b"), "down", netns=self.ns(host))

    def restore(self, host: str) -> None:
        ip("link", "set", self.veth(host, "b"), "up", netns=self.ns(host))
        ip("route", "replace", "default", "via", f"{self.base}.{_PAIRS[host] + 1}",
           netns=self.ns(host))  # fmt: skip

    def cut_redis(self, host: str) -> None:
        """Drop `host`'s packets to Redis only (it still reaches PostgreSQL)."""
        ip("route", "add", "blackhole", f"{self.redis_ip}/32", netns=self.ns(host))

    def restore_redis(self, host: str) -> None:
        ip("route", "del", "blackhole", f"{self.redis_ip}/32", netns=self.ns(host))

    def blackhole_postgres(self, host: str) -> None:
        """Make `host`'s packets to PostgreSQL vanish without a word (no ICMP, no reset):
        they go to a next hop whose address answers no one (a neighbour entry with a MAC no
        interface has), so a new connection hangs and an open one waits on retransmits."""
        dev, ns = self.veth(host, "b"), self.ns(host)
        ip("neigh", "replace", _NOWHERE, "lladdr", "02:00:00:00:00:01", "dev", dev,
           "nud", "permanent", netns=ns)  # fmt: skip
        ip("route", "add", f"{self.postgres_ip}/32", "via", _NOWHERE, "dev", dev, "onlink",
           netns=ns)  # fmt: skip

    def restore_postgres(self, host: str) -> None:
        ip("route", "del", f"{self.postgres_ip}/32", netns=self.ns(host))

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url, socket_timeout=5)


def _link(hosts: Hosts, host: str) -> None:
    """A veth pair between the data namespace and `host` (a worker namespace, or the root)."""
    data_side, far_side = hosts.veth(host, "a"), hosts.veth(host, "b")
    net = _PAIRS[host]
    ip("link", "add", data_side, "type", "veth", "peer", "name", far_side)
    ip("link", "set", data_side, "netns", hosts.ns("data"))
    ip("addr", "add", f"{hosts.base}.{net + 1}/30", "dev", data_side, netns=hosts.ns("data"))
    ip("link", "set", data_side, "up", netns=hosts.ns("data"))
    far_ns = None if host == "root" else hosts.ns(host)
    if far_ns:
        ip("link", "set", far_side, "netns", far_ns)
    ip("addr", "add", f"{hosts.base}.{net + 2}/30", "dev", far_side, netns=far_ns)
    ip("link", "set", far_side, "up", netns=far_ns)
    via = f"{hosts.base}.{net + 1}"
    if far_ns:
        ip("link", "set", "lo", "up", netns=far_ns)
        ip("route", "add", "default", "via", via, netns=far_ns)
    else:
        ip("route", "add", f"{hosts.base}.0/30", "via", via)


def _start_postgres(hosts: Hosts) -> None:
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    data = hosts.directory / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    initdb = ["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data)]
    initdb += ["-U", "postgres", "--auth=trust", "--no-sync"]
    subprocess.run(initdb, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 trust\n")
    command = [str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=*"]
    command += ["-c", f"unix_socket_directories={data}", "-c", "fsync=off"]
    hosts.spawn("data", command, log=hosts.directory / "postgres.log", user="postgres")
    engine = sa.create_engine(hosts.database_url)
    deadline = time.monotonic() + 30
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            break
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                log = (hosts.directory / "postgres.log").read_text()[-2000:]
                raise AssertionError(f"PostgreSQL did not start: {log}") from None
            time.sleep(0.1)
    engine.dispose()


def _start_redis(hosts: Hosts) -> None:
    command = [redis_server_binary(), "--port", "6379", "--bind", "0.0.0.0"]
    command += ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(hosts.directory)]
    hosts.spawn("data", command, log=hosts.directory / "redis.log")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(RedisError):
            if hosts.redis().ping():
                return
        if time.monotonic() > deadline:
            raise AssertionError((hosts.directory / "redis.log").read_text()[-2000:])
        time.sleep(0.05)


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    """Build the namespaces, links and data services; tear everything down afterwards."""
    made = Hosts(
        id=secrets.token_hex(3),
        base=f"10.{random.randint(64, 250)}.{random.randint(0, 255)}",
        directory=Path(tempfile.mkdtemp(prefix="rt-hosts-", dir="/tmp")),
    )
    os.chmod(made.directory, 0o755)  # postgres must reach its data directory
    names = [made.ns(h) for h in ("data", *WORKERS)]
    try:
        for name in names:
            ip("netns", "add", name)
        ip("link", "set", "lo", "up", netns=made.ns("data"))
        for alias in (made.redis_ip, made.postgres_ip):
            ip("addr", "add", f"{alias}/32", "dev", "lo", netns=made.ns("data"))
        for host in (*WORKERS, "root"):
            _link(made, host)
        _start_redis(made)
        _start_postgres(made)
        yield made
    finally:
        _teardown(made, names)


def _teardown(made: Hosts, names: list[str]) -> None:
    for process in made.processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for name in names:  # anything still inside (a worker's horse, a postgres backend)
        found = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for process in made.processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(subprocess.CalledProcessError):
        ip("link", "del", made.veth("root", "b"))
    for name in names:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("netns", "del", name)
    shutil.rmtree(made.directory, ignore_errors=True)
