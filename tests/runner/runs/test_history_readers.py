"""The CLI's readers across both stores: a moved run is read from history while Redis is down,
a run in Redis while the history database is, a followed log does not lose the events that
moved, and a rerun racing the move has one outcome."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result
from redis import Redis

from runner.cli import App, cli
from runner.cli.runs import following
from runner.config import Settings
from runner.keys import Keys
from runner.record import Enqueued, RunState
from runner.runs.move import Mover
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs
from tests.conftest import worker_env

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
NO_DATABASE = "postgresql+psycopg://u:secret-pw@127.0.0.1:1/h"


def cli_with(settings: Settings, **env: str) -> Callable[..., Result]:
    """The CLI in-process against this test's settings, some of them replaced."""
    base = {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}
    if settings.history_url:
        base["RUNNER_HISTORY_URL"] = settings.history_url

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**base, **env})

    return invoke


def test_a_moved_run_is_shown_and_its_log_read_while_redis_is_down(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    drain()
    assert mover.move_once() == 1
    down = cli_with(mover.settings, RUNNER_REDIS_URL=NO_REDIS)
    shown = down("show", token[:10])  # a prefix too: history resolves it
    assert shown.exit_code == 0, shown.output
    assert token in shown.output and "succeeded" in shown.output
    logged = down("logs", token, "--json")
    assert logged.exit_code == 0 and "run.succeeded" in logged.output
    unknown = down("show", "no-such-run")
    assert unknown.exit_code in (1, 2) and "Traceback" not in unknown.output
    assert "Redis" in unknown.output, "a run not in history: Redis is needed, and it says so"


def test_a_run_in_redis_is_read_while_the_history_database_is_down(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], settings: Settings,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    drain()
    down = cli_with(settings, RUNNER_HISTORY_URL=NO_DATABASE)
    shown = down("show", token)
    assert shown.exit_code == 0 and "succeeded" in shown.output
    listed = down("runs")
    assert listed.exit_code == 0 and token in listed.output
    assert "history database" in listed.output and "Redis only" in listed.output
    assert "secret-pw" not in listed.output
    unknown = down("show", "no-such-run")
    assert unknown.exit_code in (1, 2) and "Traceback" not in unknown.output
    assert "cannot be read" in unknown.output and "secret-pw" not in unknown.output


def test_a_followed_log_goes_on_from_history_when_the_run_moves_meanwhile(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("greet", name="ada").token
    app = App(mover.settings)
    followed = following(app, token)
    first = next(followed)  # read while the run is queued, before any worker took it
    drain()
    assert mover.move_once() == 1  # it ended and moved before the follower read again
    rest = list(followed)
    whole = [e for _, e in app.history.events(token)]
    assert [first, *rest] == whole, "every event once, in order, across the move"
    assert rest and rest[-1]["event"] == "run.succeeded"


def test_the_cli_reruns_a_moved_failed_run_by_a_prefix_of_its_token(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("broken").token
    drain()
    s = replace(mover.settings, failed_seconds=0)
    assert Mover(redis, s, store=mover.store).move_once() == 1
    done = cli_with(s)("rerun", token[:10])
    assert done.exit_code == 0, done.output
    assert f"requeued: {token}" in done.output
    back = Runs(redis, s).get(token)
    assert back is not None and back.state == RunState.QUEUED


def test_a_rerun_between_the_copy_and_the_delete_keeps_the_run_in_redis(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    token = enqueue("broken").token
    drain()
    s = replace(mover.settings, failed_seconds=0)
    racing = Mover(redis, s, store=mover.store)
    copies = racing.copy(racing.due())
    racing.store.write(copies)  # written to the database ...
    assert rerun(redis, s, token).state == "queued"  # ... and rerun before the delete
    assert racing.forget(copies) == 0, "the run changed since its copy: it stays"
    keys = Keys(s.prefix)
    assert redis.exists(keys.run(token)) and not redis.exists(keys.done(token))
    shown = cli_with(s)("show", token, "--json")
    assert json.loads(shown.output)["state"] == "queued", "Redis wins for a run in both stores"
    drain()
    assert racing.move_once() == 1
    moved = racing.store.get(token)
    assert moved is not None and (moved.state, moved.attempt) == (RunState.FAILED, 2)
    assert racing.store.generations(token) == [0], "one run: its copy replaced, not added"


@pytest.mark.slow
def test_reruns_racing_moves_on_threads_always_leave_one_live_run(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis, mover: Mover,
) -> None:  # fmt: skip
    s = replace(mover.settings, failed_seconds=0)
    keys = Keys(s.prefix)
    runs = Runs(redis, s)
    for i in range(10):
        token = enqueue("broken", token=f"race-{i}").token
        drain()
        racing = Mover(redis, s, store=mover.store)
        start = threading.Barrier(2)

        def move(m: Mover = racing, start: threading.Barrier = start) -> None:
            start.wait()
            m.move_once()

        thread = threading.Thread(target=move)
        thread.start()
        start.wait()
        done = rerun(redis, s, token)
        thread.join(timeout=30)
        assert done.state == "queued", done  # from Redis, or brought back from history
        back = runs.get(token)
        assert back is not None and (back.state, back.attempt) == (RunState.QUEUED, 2)
        assert not redis.exists(keys.done(token)), "a live run has no moved marker"
        assert racing.store.generations(token) in ([], [0])
        drain()
        assert runs.get(token) is not None
