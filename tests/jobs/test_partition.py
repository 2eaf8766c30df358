"""Worker hosts cut off from the data host mid-import: real network namespaces, a data host
with its own Redis and PostgreSQL, two worker hosts, everything over TCP across veth pairs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy import Engine

from jobs.database import make_engine
from jobs.progress import imports
from jobs.revisions import upgrade
from jobs.sources import resolve
from jobs.store import posts
from runner.config import Settings
from runner.record import RunRecord
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import ROOT, wait_for, worker_env
from tests.netns import WORKERS, Hosts, hosts, unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "namespaces available"),
]
LEASE = 4.0
POSTS = 40_000
OPEN_WRITE = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE client_addr = CAST(:addr AS inet)"
    " AND backend_xid IS NOT NULL"
)


STATES = sa.text(
    "SELECT state, wait_event, backend_xid IS NOT NULL FROM pg_stat_activity"
    " WHERE client_addr = CAST(:addr AS inet)"
)


@pytest.fixture
def net() -> Iterator[Hosts]:
    with hosts() as made:
        yield made


@pytest.fixture
def settings(net: Hosts, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", redis_url=net.redis_url, database_url=net.database_url,
        lease_seconds=LEASE, tasks_module="jobs", queues=("imports",),
    )  # fmt: skip


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.store_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def start_workers(
    net: Hosts, settings: Settings, tmp_path: Path
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """A `runner worker` in each worker namespace: its process and its log, by host."""
    started = {}
    for host in WORKERS:
        log = tmp_path / f"{host}.log"
        command = [sys.executable, "-m", "runner", "worker", "--name", host]
        env = {**worker_env(settings), "PYTHONPATH": str(ROOT)}
        started[host] = (net.spawn(host, command, env=env, log=log), log)
    return started


def inserted(record: RunRecord | None) -> int:
    return int(((record.counters if record else None) or {}).get("inserted", 0))


def enqueue_import(tmp_path: Path, redis: Redis, settings: Settings) -> str:
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write_feed(generate_posts(POSTS, seed=23), out)
    [source] = resolve(str(path))
    task = load_registry("jobs").get("import_posts")
    request = Request(task, {"source": source.location, "batch_size": 400}, source.token)
    return Enqueuer(redis, settings).enqueue(request).token


def host_of(record: RunRecord | None) -> str | None:
    """Which worker host runs a run's current attempt (worker names are host.horsePID)."""
    if record is None or record.state != "running" or not record.worker:
        return None
    return record.worker.split(".")[0]


def cut_mid_transaction(net: Hosts, engine: Engine, host: str) -> float:
    """Take `host`'s link down while it holds a write transaction open (pg_stat_activity);
    a cut that missed one (it committed first) is undone and tried again. Returns when."""
    address = net.address(host)
    # (autocommit: inside one transaction, pg_stat_activity would be one snapshot)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for _ in range(50):
            deadline = time.monotonic() + 30
            while not conn.execute(OPEN_WRITE, {"addr": address}).scalar():
                assert time.monotonic() < deadline, f"{host} opened no write transaction"
            net.cut(host)
            cut_at = time.monotonic()
            time.sleep(0.5)
            if conn.execute(OPEN_WRITE, {"addr": address}).scalar():
                states = conn.execute(STATES, {"addr": address}).all()
                print(f"\ncut {host} while its sessions were {states}")
                return cut_at
            net.restore(host)
            time.sleep(0.5)
    raise AssertionError(f"no cut landed inside a write transaction of {host}")


def can_reach_redis(net: Hosts, host: str) -> bool:
    ping = f"from redis import Redis; Redis(host={net.redis_ip!r}, socket_timeout=2).ping()"
    return net.run_in(host, [sys.executable, "-c", ping], timeout=8) == 0


def can_reach_postgres(net: Hosts, host: str) -> bool:
    dsn = f"host={net.postgres_ip} user=postgres dbname=postgres connect_timeout=3"
    query = f"import psycopg; psycopg.connect({dsn!r}).execute('SELECT 1')"
    return net.run_in(host, [sys.executable, "-c", query], timeout=8) == 0


def assert_exact(engine: Engine, runs: Runs, token: str) -> RunRecord:
    record = runs.get(token)
    assert record is not None and record.state == "succeeded", record
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(posts.c.source_id)).scalars())
        row = conn.execute(sa.select(imports).where(imports.c.token == token)).mappings().one()
    assert len(ids) == len(set(ids)) == POSTS
    assert (row["inserted"], row["updated"], row["unchanged"], row["rejected"]) == (POSTS, 0, 0, 0)
    assert record.result is not None and record.result["inserted"] == POSTS
    assert record.result["updated"] == record.result["unchanged"] == 0
    return record


@pytest.mark.parametrize("cut", ["link-down", "redis-only"])
def test_a_worker_host_cut_off_mid_import_is_fenced_out_and_rejoins(
    cut: str, net: Hosts, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # Given an import running on one of two worker hosts
    runs = Runs(net.redis(), settings)
    token = enqueue_import(tmp_path, net.redis(), settings)
    workers = start_workers(net, settings, tmp_path)
    logs = {host: log for host, (_, log) in workers.items()}
    first = str(wait_for(lambda: host_of(runs.get(token)), timeout=60, what="the import to run"))
    other = next(h for h in WORKERS if h != first)
    # When that host is cut off: its link down while it holds a write transaction open, or
    # only its packets to Redis dropped (it still reaches PostgreSQL)
    if cut == "link-down":
        cut_at = cut_mid_transaction(net, engine, first)
        assert not can_reach_postgres(net, first)
    else:
        net.cut_redis(first)
        cut_at = time.monotonic()
        assert can_reach_postgres(net, first)
    assert not can_reach_redis(net, first), "the cut-off host still reaches Redis"
    before = inserted(runs.get(token))

    def describe() -> str:
        return "\n".join(
            f"--- {h}\n{p.read_text(errors='replace')[-3000:]}" for h, p in logs.items()
        )

    # Then the other host takes the run over (the lease expired, the locks were released)
    wait_for(
        lambda: host_of(r := runs.get(token)) == other and inserted(r) > before,
        timeout=60, what=f"{other} to continue the import", describe=describe,
    )  # fmt: skip
    print(f"\n{cut}: {other} continued the import {time.monotonic() - cut_at:.1f}s after the cut")
    # When the link comes back and the other host dies, the cut-off host finishes the run
    if cut == "link-down":
        net.restore(first)
    else:
        net.restore_redis(first)
    assert can_reach_redis(net, first)
    os.killpg(workers[other][0].pid, signal.SIGKILL)
    wait_for(
        lambda: (r := runs.get(token)) is not None and r.state == "succeeded",
        timeout=120, what=f"{first} to finish the import", describe=describe,
    )  # fmt: skip
    # Then every post is there once, the counters are exact, the cut-off host's late writes
    # were refused (it abandoned its attempt) and it took the run's next attempt
    record = assert_exact(engine, runs, token)
    assert record.worker is not None and record.worker.startswith(f"{first}.")
    assert "attempt.abandoned" in logs[first].read_text() or "lease.lost" in logs[first].read_text()
    if cut == "link-down":  # the server ended the vanished client's session, not the cut's end
        ended = ("idle-in-transaction timeout", "could not receive data from client")
        assert any(why in (net.directory / "postgres.log").read_text() for why in ended)
