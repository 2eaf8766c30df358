"""A Redis Sentinel failover mid-import: a real master, replica and three sentinels, real
workers, the master SIGKILLed; once with the replica up to date, once with it lagging (so
that writes the master acknowledged are really lost)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis

from jobs.progress import imports
from jobs.sources import resolve
from jobs.store import engine_for, posts
from runner.config import Settings
from runner.connections.redis import Durable, connect
from runner.cron.ticks import Cron, Firing
from runner.record import ACTIVE
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.index import RunIndex
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from scripts.gen_posts import generate_posts, write_feed
from tests.conftest import WorkerProcess, wait_for
from tests.sentinels import (
    Topology,
    can_lose_writes,
    fill_replication,
    lose_unread_replication,
    pause_replication,
    sentinel_topology,
)

FEEDS, POSTS = 4, 4_000
START = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
TICKS = 12  # 06:00 to 06:11: poll_inbox every minute, refresh_freshness at 06:07


@pytest.fixture
def topology() -> Iterator[Topology]:
    with sentinel_topology() as topology:
        yield topology


@pytest.fixture
def settings(topology: Topology, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", redis_url=topology.url, lease_seconds=3.0, tasks_module="jobs",
        queues=("imports", "cron", "default"),
    )  # fmt: skip


@pytest.fixture
def client(settings: Settings) -> Redis:
    return connect(settings)


@pytest.fixture
def runs(client: Redis, settings: Settings) -> Runs:
    return Runs(client, settings)


@pytest.fixture
def index(client: Redis, settings: Settings) -> RunIndex:
    """The runs of the topology's master (conftest's `index` reads the per-test Redis, empty
    here: a wait for every run to end passed at once)."""
    return RunIndex(client, settings)


def enqueue_imports(tmp_path: Path, client: Redis, settings: Settings) -> list[str]:
    task = load_registry("jobs").get("import_posts")
    requests = []
    for i in range(FEEDS):
        path = tmp_path / f"feed-{i}.jsonl"
        with path.open("w") as out:
            write_feed(generate_posts(POSTS, seed=17, start=i * POSTS), out)
        [source] = resolve(str(path))
        requests.append(Request(task, {"source": source.location, "batch_size": 25}, source.token))
    return [e.token for e in Enqueuer(client, settings).enqueue_many(requests)]


class Crontab(threading.Thread):
    """Ticks minute after minute from 06:00 (as a system crontab would, each tick retried
    through an outage), keeping what each tick said it did."""

    def __init__(self, client: Redis, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.cron = Cron(client, settings, registry=load_registry("jobs"))
        self.firings: list[Firing] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for minute in range(TICKS):
                self.firings += Durable(60)(self.cron.tick, START + timedelta(minutes=minute))
                time.sleep(0.4)
        except BaseException as exc:
            self.error = exc


class Operator(threading.Thread):
    """Enqueues one run, as `runner enqueue` would, keeping what it was told (or the error)."""

    TOKEN = "build_sitemap@operator"  # a task the crontab does not fire in these minutes

    def __init__(self, client: Redis, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.enqueuer = Enqueuer(client, settings)
        self.task = load_registry("jobs").get("build_sitemap")
        self.told: Enqueued | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            args = {"base_url": "https://site.example"}
            self.told = self.enqueuer.enqueue(Request(self.task, args, self.TOKEN))
        except BaseException as exc:
            self.error = exc


def state(runs: Runs, token: str) -> str | None:
    record = runs.get(token)
    return record.state if record else None


def under_way(engine: sa.Engine, runs: Runs, tokens: list[str]) -> list[str]:
    """The imports past their claim with half their posts or more still to go,
    counted in the store (a Redis checkpoint, once a second, would skip the window: the
    counters of a run still at its claim are as empty as those of one that has just begun)."""
    under: list[str] = []
    with engine.connect() as conn:
        for feed, token in enumerate(tokens):
            lo, hi = (f"alphanode-{n:06d}" for n in (feed * POSTS + 1, (feed + 1) * POSTS))
            count = sa.select(sa.func.count()).where(posts.c.source_id.between(lo, hi))
            done = conn.execute(count).scalar_one()
            if 0 < done <= POSTS // 2 and state(runs, token) == "running":
                under.append(token)
    return under


@contextmanager
def store_held(engine: sa.Engine) -> Iterator[None]:
    """The store's write lock held (SQLite's one writer, BEGIN IMMEDIATE): every import waits
    at its next batch (within the store's busy timeout, 30 s) until the block ends."""
    with engine.connect() as conn, conn.begin():
        yield


def progress(runs: Runs, tokens: list[str]) -> int:
    return sum(int((r.counters or {}).get("inserted", 0)) for t in tokens if (r := runs.get(t)))


@pytest.mark.slow
@pytest.mark.parametrize("lagging", [False, True], ids=["replica-in-sync", "replica-lagging"])
def test_a_failover_mid_import_loses_no_post_no_count_and_no_cron_slot(
    lagging: bool, tmp_path: Path, topology: Topology, client: Redis, runs: Runs, index: RunIndex,
    settings: Settings, start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    if lagging and can_lose_writes():
        pytest.skip(can_lose_writes())
    # Given four imports under way on two workers, and a crontab ticking (its own worker)
    tokens = enqueue_imports(tmp_path, client, settings)
    workers = [start_worker("--name", f"w{i}") for i in range(2)]
    workers.append(start_worker("--name", "cron", "--queue", "cron"))
    wait_for(lambda: progress(runs, tokens) >= FEEDS * POSTS // 6, timeout=60, what="progress")
    crontab = Crontab(connect(settings), settings)
    crontab.start()
    if not lagging:
        wait_for(lambda: progress(runs, tokens) >= FEEDS * POSTS // 3, timeout=60, what="progress")
    old = topology.master()
    replica = topology.replica_of(old)
    finished_unreplicated: set[str] = set()
    if lagging:
        # ... and the replica stops receiving the master's writes, which go on acknowledged
        # for longer than a lease, until an import has finished (its outcome, the leases'
        # renewals, checkpoints, the next claims and enqueues all exist on the master only)
        # (frozen while an import is past its claim, which waits for the replica, and has
        # most of its posts to go, so that it finishes after the filler on a loaded machine)
        store = engine_for(settings.store_url)
        wait_for(lambda: under_way(store, runs, tokens), timeout=60, what="an import under way")
        with store_held(store):  # no import gets further while the freeze is set up
            pause_replication(replica)
            fill_replication(old)  # so that every write from here on is lost with the master
            # (and an operator enqueues a run now: it must not be told of a run the failover
            # loses, so the enqueue waits for the replica, and is redone on the new master)
            operator = Operator(connect(settings), settings)
            operator.start()
            frozen_at = time.monotonic()
            active = {t for t in tokens if state(runs, t) != "succeeded"}
            at_freeze = {t: progress(runs, [t]) for t in tokens}
        assert active, "every import finished before the freeze"
        wait_for(
            lambda: time.monotonic() - frozen_at > settings.lease_seconds + 0.5
            and any(state(runs, t) == "succeeded" for t in active),
            timeout=60, what="an import to finish while the replica is frozen",
            describe=lambda: "\n".join(
                [f"{t[:16]} {r.state} on {r.worker} attempt {r.attempt} {r.counters}"
                 f" ({at_freeze[t]} inserted at the freeze)" for t in tokens if (r := runs.get(t))]
                + [f"--- {w.log.name}\n{w.output()[-4000:]}" for w in workers]
            ),
        )  # fmt: skip
        finished_unreplicated = {t for t in active if state(runs, t) == "succeeded"}
        info = old.client().info("replication")
        assert info["master_repl_offset"] > info["slave0"]["offset"], "nothing to lose"
    # When the master is SIGKILLed and a sentinel promotes the replica
    old.kill()
    killed_at = time.monotonic()
    if lagging:
        lose_unread_replication(old, replica)
    topology.wait_for_failover(old)
    print(f"\nfailover: a new master {time.monotonic() - killed_at:.1f}s after the kill")

    def describe() -> str:
        lines = [f"{r.token} {r.state} attempt={r.attempt} error={r.error}"
                 for r in index.runs() if r.state != "succeeded"]  # fmt: skip
        lines += [f"--- {w.log.name}\n{w.output()[-3000:]}" for w in workers]
        return "\n".join(lines)

    # Then the operator was told of a run only once it was safe, and that run exists
    if lagging:
        operator.join(timeout=120)
        assert operator.error is None and operator.told is not None
        assert state(runs, Operator.TOKEN) is not None, "an enqueue the failover lost"
    # And every run ends, succeeded, and nothing is left queued, running or retrying
    crontab.join(timeout=120)
    assert crontab.error is None and len(crontab.firings) == TICKS * len(crontab.cron.entries)
    wait_for(
        lambda: all(r.state not in ACTIVE for r in index.runs()), timeout=120,
        what="every run to end", describe=describe,
    )  # fmt: skip
    assert all(r.state == "succeeded" for r in index.runs()), describe()
    assert set(tokens) <= {r.token for r in index.runs()}, "the index is not the master's"
    # ... every post is there exactly once, and the counters are exact
    engine = engine_for(settings.store_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(posts.c.source_id)).scalars())
        recorded = conn.execute(sa.select(sa.func.sum(imports.c.inserted))).scalar_one()
    assert len(ids) == FEEDS * POSTS == len(set(ids)) == recorded
    for token in tokens:
        record = runs.get(token)
        assert record is not None and record.result is not None
        assert (record.result["inserted"], record.result["updated"]) == (POSTS, 0)
        assert record.result["unchanged"] == record.result["rejected"] == 0
    # (an import whose outcome the failover lost ran again, and found its work done)
    assert all(runs.get(t).attempt >= 2 for t in finished_unreplicated)  # type: ignore[union-attr]
    # ... and every slot a tick fired has its one run, succeeded; a skipped slot has none
    fired = [r.token for f in crontab.firings if f.outcome == "fired" for r in f.runs]
    skipped = [f"{e.task}@{s:%Y-%m-%dT%H:%MZ}" for f in crontab.firings
               if f.outcome == "skipped" for e in crontab.cron.entries if e.name == f.entry
               for s in f.slots]  # fmt: skip
    assert len(set(fired)) >= 3 and "refresh_freshness@2026-11-27T06:07Z" in fired
    assert all(state(runs, t) == "succeeded" for t in fired), "\n".join(
        [f"{t} {r.state if r else None} attempt={r and r.attempt} error={r and r.error}"
         for t in fired if (r := runs.get(t)) is None or r.state != "succeeded"]
    ) + describe()  # fmt: skip
    assert not [t for t in skipped if runs.get(t) is not None and t not in fired]
    minutes = {f"poll_inbox@{START + timedelta(minutes=m):%Y-%m-%dT%H:%MZ}" for m in range(TICKS)}
    assert minutes <= set(fired) | set(skipped), "a due slot was neither fired nor skipped"
