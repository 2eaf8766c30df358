"""A black-holed history database (its packets vanish: real network namespaces) only delays
the move: jobs keep running and finishing, health says how many runs wait, and once the
database is reachable again every run moves, once."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.config import Settings
from runner.keys import Keys
from runner.monitoring.health import check_health
from runner.record import RunState
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.history import HistoryStore
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from tests.conftest import ROOT, wait_for, worker_env
from tests.netns import Hosts, hosts, unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "namespaces available"),
]
BLACKHOLE_SECONDS = 30.0


@pytest.fixture
def net() -> Iterator[Hosts]:
    with hosts() as made:
        yield made


def test_a_black_holed_history_database_only_delays_the_move(net: Hosts, tmp_path: Path) -> None:
    history_url = net.database_url
    settings = Settings(
        home=tmp_path / "home", redis_url=net.redis_url, history_url=history_url,
        history_delay_seconds=0.0, lease_seconds=2.0, tasks_module="tests.sample_tasks",
        queues=("default",),
    )  # fmt: skip
    redis = net.redis()
    keys, runs = Keys(settings.prefix), Runs(redis, settings)
    greet = load_registry(settings.tasks_module).get("greet")
    enqueuer = Enqueuer(redis, settings)

    def enqueue(name: str) -> str:
        return enqueuer.enqueue(Request(greet, {"name": name}, f"greet-{name}")).token

    env = worker_env(settings, RUNNER_HISTORY_URL=history_url, RUNNER_HISTORY_DELAY_SECONDS="0")
    worker = net.spawn(
        "w1", [sys.executable, "-m", "runner", "worker", "--name", "w1"],
        env={**env, "PYTHONPATH": str(ROOT)}, log=tmp_path / "w1.log",
    )  # fmt: skip
    try:
        before = [enqueue(f"before-{i}") for i in range(3)]
        wait_for(lambda: all(redis.exists(keys.done(t)) for t in before), timeout=90,
                 what="the first runs to move while the database answers")  # fmt: skip

        net.blackhole_postgres("w1")
        cut_at = time.monotonic()
        during = [enqueue(f"during-{i}") for i in range(10)]

        def finished() -> bool:
            records = [runs.get(t) for t in during]
            return all(r is not None and r.state == RunState.SUCCEEDED for r in records)

        wait_for(finished, timeout=90, what="jobs to finish while the database is black-holed")
        assert not any(redis.exists(keys.done(t)) for t in during), "nothing moved meanwhile"
        waiting = check_health(redis, settings, now=time.time() + 600).up.figures
        assert waiting["history_waiting"] >= len(during), waiting
        time.sleep(max(0.0, BLACKHOLE_SECONDS - (time.monotonic() - cut_at)))  # 30 s at least
        net.restore_postgres("w1")

        wait_for(lambda: all(redis.exists(keys.done(t)) for t in during), timeout=120,
                 what="the runs to move once the database is back")  # fmt: skip
        assert worker.poll() is None, "the worker lived through it"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    store = HistoryStore(settings)
    try:
        for token in [*before, *during]:
            moved = store.get(token)
            assert moved is not None and moved.state == RunState.SUCCEEDED
            assert store.generations(token) == [0]
        assert store.engine is not None
        with store.engine.connect() as conn:
            table = sa.table("runner_runs", sa.column("token"))
            total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
        assert total == len(before) + len(during), "each run moved once"
    finally:
        if store.engine is not None:
            store.engine.dispose()
