"""A real Sentinel topology for tests: a master, a replica and three sentinels, all real
redis-server processes on TCP ports of 127.0.0.1, in one temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from runner.connections.redis import redis_server_binary

SERVICE = "site"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Node:
    """One redis-server process (data node or sentinel)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    password: str | None = None

    def client(self) -> Redis:
        return Redis(port=self.port, socket_timeout=5, password=self.password)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write reaches anyone."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Topology:
    """The processes, and what the sentinels currently say about the master."""

    directory: Path
    sentinel_password: str | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master(self) -> Node:
        """The data node the sentinels name as master now."""
        _, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return next(n for n in self.nodes.values() if n.port == int(port))

    def replica_of(self, master: Node) -> Node:
        return next(n for n in self.nodes.values() if n is not master)

    def wait_for_failover(self, old: Node, timeout: float = 30.0) -> Node:
        """Wait until every sentinel names a new master that answers as one; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, StopIteration):
                ports = {
                    int(s.client().sentinel_get_master_addr_by_name(SERVICE)[1])
                    for s in self.sentinels
                }
                if len(ports) == 1 and old.port not in ports:
                    new = next(n for n in self.nodes.values() if n.port in ports)
                    if new.client().info("replication")["role"] == "master":
                        return new
            time.sleep(0.1)
        raise AssertionError(f"no failover away from {old.name} within {timeout}s")

    def wait_until_replicated(self, timeout: float = 20.0) -> None:
        """Wait until the replica is connected and has caught up with the master."""
        master = self.master()
        replica = self.replica_of(master)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError):
                ours = master.client().info("replication")["master_repl_offset"]
                theirs = replica.client().info("replication")
                if theirs.get("master_link_status") == "up" and theirs["slave_repl_offset"] >= ours:
                    return
            time.sleep(0.05)
        raise AssertionError("the replica did not catch up with the master")


def _spawn(topology: Topology, name: str, *args: str, sentinel: bool = False) -> Node:
    port = free_port()
    workdir = topology.directory / name
    workdir.mkdir()
    config = workdir / ("sentinel.conf" if sentinel else "redis.conf")
    password = topology.sentinel_password if sentinel else None
    auth = f"requirepass {password}\nsentinel sentinel-pass {password}\n" if password else ""
    config.write_text(auth)
    command = [redis_server_binary(), str(config)]
    if sentinel:
        command.append("--sentinel")
    command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    command += ["--save", "", "--appendonly", "no", *args]
    log = open(workdir / "log", "wb")  # noqa: SIM115 (the process keeps it)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    node = Node(name, port, process, password)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(RedisError):
            if node.client().ping():
                return node
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"{name} did not start: {(workdir / 'log').read_text()[-2000:]}")
        time.sleep(0.02)


@contextlib.contextmanager
def sentinel_topology(*, sentinel_password: str | None = None) -> Iterator[Topology]:
    """Start a master, a replica of it and three sentinels watching it (with their own
    password, if given); stop all and remove their files at the end, whatever happened."""
    directory = Path(tempfile.mkdtemp(prefix="rt-sentinel-", dir="/tmp"))
    topology = Topology(directory, sentinel_password)
    try:
        a = _spawn(topology, "a")
        topology.nodes["a"] = a
        topology.nodes["b"] = _spawn(topology, "b", "--replicaof", "127.0.0.1", str(a.port))
        for i in range(3):
            sentinel = _spawn(topology, f"sentinel{i}", sentinel=True)
            client = sentinel.client()
            client.sentinel_monitor(SERVICE, "127.0.0.1", a.port, 2)
            for option, value in (
                ("down-after-milliseconds", DOWN_AFTER_MS),
                ("failover-timeout", FAILOVER_TIMEOUT_MS),
            ):
                client.sentinel_set(SERVICE, option, value)
            topology.sentinels.append(sentinel)
        topology.wait_until_replicated()
        _wait_for_sentinels_to_know_each_other(topology)
        yield topology
    finally:
        for node in [*topology.sentinels, *topology.nodes.values()]:
            node.kill()
        shutil.rmtree(topology.directory, ignore_errors=True)


def _wait_for_sentinels_to_know_each_other(topology: Topology, timeout: float = 20.0) -> None:
    """A failover needs a quorum of sentinels that know of each other and of the replica."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError):
            ready = all(
                int(s.client().sentinel_master(SERVICE)["num-other-sentinels"]) == 2
                and int(s.client().sentinel_master(SERVICE)["num-slaves"]) == 1
                for s in topology.sentinels
            )
            if ready:
                return
        time.sleep(0.1)
    raise AssertionError("the sentinels did not discover each other and the replica")


def pause_replication(replica: Node) -> None:
    """Freeze the replica (SIGSTOP): the master keeps acknowledging writes it does not apply
    (they wait in its socket, unread, until `lose_unread_replication`)."""
    os.kill(replica.process.pid, signal.SIGSTOP)


FILLER_BYTES = 48 << 20  # more than a loopback socket's buffers hold (tcp_rmem max 32 MiB here)


def fill_replication(master: Node) -> None:
    """Write a value larger than the kernel's socket buffers to the master of a frozen replica.
    What reached the replica's receive buffer before the freeze was cut survives it (a read
    after `ss -K` still returns queued data), so without this the writes made during a short
    freeze may all be replicated after all. The filler takes the buffers: every write after
    it waits in the master's own output buffer, and dies with the master."""
    master.client().set("test:replication-filler", b"x" * FILLER_BYTES)


def lose_unread_replication(master: Node, replica: Node) -> None:
    """Destroy the frozen replica's connection to the (dead) master with the data it has not
    read (`ss -K`), then let it run: what the master acknowledged after `fill_replication`
    is lost."""
    command = ["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{master.port}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    os.kill(replica.process.pid, signal.SIGCONT)


def can_lose_writes() -> str:
    """Why `lose_unread_replication` cannot work here ('' when it can): `ss -K` needs root."""
    if os.geteuid() != 0:
        return "destroying a socket (ss -K) needs root"
    if shutil.which("ss") is None:
        return "no `ss` (iproute2) to destroy the replica's socket"
    return ""
