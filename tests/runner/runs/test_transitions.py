"""runner.runs.transitions: reading run records (by token, job id or prefix; listings) and the
reads the reaper relies on. The lease-fenced writes are tested through attempts in
test_execute.py."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable

import pytest
from redis import Redis

from runner.config import Settings
from runner.connections.lua import LuaScript
from runner.errors import UnknownRun
from runner.record import RunState
from runner.runs import scripts
from runner.runs.enqueue import Enqueued
from runner.runs.figures import Figures
from runner.runs.transitions import Runs
from runner.tokens import job_id


def test_a_run_is_found_by_its_token_its_job_id_or_a_unique_prefix(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given two queued runs whose tokens share a prefix
    first = enqueue("noop", token="import-alpha")
    enqueue("noop", token="import-beta")
    # When each is looked up by token, by RQ job id and by an unambiguous prefix
    # Then each way names the same run
    assert runs.resolve("import-alpha") == "import-alpha"
    assert runs.resolve(first.job_id) == "import-alpha"
    assert runs.resolve("import-a") == "import-alpha"


def test_an_ambiguous_or_unknown_reference_is_refused_with_what_it_matched(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given two runs whose tokens share a prefix
    enqueue("noop", token="import-alpha")
    enqueue("noop", token="import-beta")
    # When the shared prefix, or a prefix of no run, is looked up
    # Then each is refused, saying how many runs matched
    with pytest.raises(UnknownRun, match=r"'import-' matches 2 runs \(import-alpha, import-beta"):
        runs.resolve("import-")
    with pytest.raises(UnknownRun, match="no run matches 'export'"):
        runs.resolve("export")


def test_each_handover_is_counted_and_none_uses_an_attempt(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a run whose attempts 1 and 2 are each claimed and then handed over by a stopping
    # worker
    token = enqueue("counting", items=3).token
    budget = runs.get(token).attempts_left  # type: ignore[union-attr]
    for attempt in (1, 2):
        holder = job_id(token, attempt)
        _, record, _ = runs.begin(token, attempt, holder=holder, worker="w", version="v")
        assert record is not None and record.state == RunState.RUNNING
        assert runs.hand_over(record, holder=holder)
    # When the run is read
    after = runs.get(token)
    # Then it is queued as attempt 3, with two handovers and its whole attempt budget left
    assert after is not None and after.state == RunState.QUEUED and after.attempt == 3
    assert after.handovers == 2 and after.attempts_left == budget


def test_a_handover_links_the_next_attempt_to_the_handing_attempts_span(
    enqueue: Callable[..., Enqueued], runs: Runs
) -> None:
    # Given a running attempt, traced
    token = enqueue("noop").token
    holder = job_id(token, 1)
    _, record, _ = runs.begin(token, 1, holder=holder, worker="w", version="v")
    assert record is not None
    span = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    # When it hands the run over
    assert runs.hand_over(record, holder=holder, span=span)
    # Then the run keeps the span its next attempt links to
    after = runs.get(token)
    assert after is not None and after.span == span


def test_every_running_run_whose_lease_is_gone_is_named_leaseless(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis
) -> None:
    # Given three running runs, the leases of two of them gone (their workers died)
    tokens = [enqueue("noop", token=f"run-{i}").token for i in range(3)]
    for token in tokens:
        runs.begin(token, 1, holder=job_id(token, 1), worker="w", version="v")
    redis.delete(runs.keys.lease(tokens[0]), runs.keys.lease(tokens[2]))
    # When the reaper's read of leaseless runs is made
    running, leaseless = runs.leaseless()
    # Then all three are running and both dead ones are leaseless
    assert sorted(running) == tokens
    assert sorted(leaseless) == [tokens[0], tokens[2]]


def test_a_release_counts_the_attempts_duration_and_queue_wait_from_its_record(
    enqueue: Callable[..., Enqueued], runs: Runs, redis: Redis, settings: Settings
) -> None:
    # Given a running attempt whose record says it began 100 s ago after waiting 42 s
    token = enqueue("noop", token="timed").token
    holder = job_id(token, 1)
    _, record, _ = runs.begin(token, 1, holder=holder, worker="w", version="v")
    assert record is not None and record.started_at is not None
    record = dataclasses.replace(record, started_at=record.started_at - 100, waited=42.0)
    # When it is released as succeeded
    fields = {"state": RunState.SUCCEEDED, "finished_at": record.started_at + 100}
    runs.release(record, holder, fields, retention=60, version="v")
    # Then the figures hold one duration of at least 100 s and the 42 s wait
    totals = Figures(redis, settings).totals()[("noop", "default")]
    assert totals.duration.count == 1 and totals.duration.total >= 100
    assert totals.wait.count == 1 and totals.wait.total == 42.0


# Each move of RunState's table: the method of Runs and the script it runs.
MOVES = {
    "begin": "BEGIN_ATTEMPT", "release": "RELEASE_ATTEMPT",
    "requeue_lost_lease": "REQUEUE_LOST_LEASE", "requeue_undelivered": "REQUEUE_UNDELIVERED",
    "promote_retry": "PROMOTE_RETRY", "hand_over": "HAND_OVER", "fail_lost": "FAIL_LOST",
    "cancel_queued": "CANCEL_QUEUED", "ask_to_cancel": "ASK_TO_CANCEL", "rerun": "RERUN_RUN",
}  # fmt: skip


def test_each_move_of_the_state_table_is_one_method_running_its_own_declared_script() -> None:
    lines = (RunState.__doc__ or "").splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("=====")]
    table = "\n".join(lines[rules[1] + 1 : rules[2]])  # the rows, under the header
    assert set(MOVES) == set(re.findall(r"`([a-z_]+)`", table)) - {"hand_over_killed"}
    for method, name in MOVES.items():
        script = getattr(scripts, name)
        assert isinstance(script, LuaScript), name
        called = re.findall(r"\b[A-Z][A-Z_]+\b", inspect.getsource(getattr(Runs, method)))
        assert [c for c in called if isinstance(getattr(scripts, c, None), LuaScript)] == [name]
    shas = [getattr(scripts, name).sha for name in MOVES.values()]
    assert len(set(shas)) == len(shas)  # one script per move, none shared
