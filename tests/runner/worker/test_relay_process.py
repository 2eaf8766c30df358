"""The relay process (runner.worker.relay_process) beside every worker: it moves finished runs
to history."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.record import Enqueued
from runner.runs.history import HistoryStore
from tests.conftest import wait_for


def test_the_relay_process_moves_finished_runs(
    enqueue: Callable[..., Enqueued], redis: Redis, history_settings: Settings,
    start_worker: Callable[..., object],
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    env = {"RUNNER_HISTORY_DELAY_SECONDS": "0"}
    if history_settings.history_url:
        env["RUNNER_HISTORY_URL"] = history_settings.history_url
    start_worker(**env)
    keys = Keys(history_settings.prefix)
    wait_for(lambda: redis.exists(keys.done(token)), timeout=60, what="the run to move")
    store = HistoryStore(history_settings)
    moved = store.get(token)
    assert moved is not None and moved.result == "ada"
    assert any(f.get("e") for _, f in store.log(token))
