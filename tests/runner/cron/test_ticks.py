"""Cron: entries and catch-up, `runner cron tick|run|list` as real processes against real Redis,
concurrent ticks and clocks, overlap skips, Redis outages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from click.testing import Result
from redis import Redis

from runner.config import Settings
from runner.cron.schedule import slot_text
from runner.cron.ticks import Cron
from runner.runs.enqueue import Enqueued
from runner.runs.index import RunIndex, RunQuery
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.tokens import slot_token
from tests.conftest import ROOT, RedisServer, WorkerProcess, wait_for, worker_env
from tests.cron_tasks import HOLD_KEY, SCHEDULE

SIX = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return SIX + timedelta(minutes=minutes)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def tokens_of(index: RunIndex, task: str) -> set[str]:
    return {r.token for r in index.runs(RunQuery(task=task))}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, tasks_module="tests.cron_tasks", queues=("default", "cron"))


@pytest.fixture
def clocks(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `runner cron run ARGS...` processes (stdout and stderr to a file each)."""
    started: list[subprocess.Popen[str]] = []

    def start(
        *args: str, speed: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        out = open(tmp_path / f"clock-{len(started)}.log", "w+")  # noqa: SIM115
        command = [sys.executable, "-m", "runner", "cron", "run", *args]
        env = worker_env(settings, RUNNER_CLOCK_SPEED=str(speed), **(env or {}))
        started.append(
            subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, text=True
            )
        )
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def clock_events(settings: Settings, tmp_path: Path, index: int) -> list[dict[str, object]]:
    """The JSON log lines clock number `index` wrote."""
    lines = (tmp_path / f"clock-{index}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


# -- entries -------------------------------------------------------------------------------


# -- tick ----------------------------------------------------------------------------------


def test_forty_concurrent_tick_processes_enqueue_each_due_entry_once(
    settings: Settings, redis: Redis, runs: Runs, index: RunIndex
) -> None:
    # Given six entries, all due at 06:00, that never fired
    command = [sys.executable, "-m", "runner", "cron", "tick", "--at", iso(SIX), "--json"]
    env = worker_env(settings)
    # When 40 `runner cron tick --at 06:00` processes run at once
    ticks = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=ROOT, text=True)
        for _ in range(40)
    ]  # fmt: skip
    outputs = [tick.communicate(timeout=120)[0] for tick in ticks]
    # Then every process exits 0 and reports each entry as fired
    assert [t.returncode for t in ticks] == [0] * 40
    reports = [json.loads(line) for out in outputs for line in out.splitlines()]
    assert len(reports) == 40 * 6 and {r["outcome"] for r in reports} == {"fired"}
    # And there is exactly one run and one RQ job per entry
    expected = {slot_token(e.task, SIX) for e in SCHEDULE}
    assert {r.token for r in index.runs()} == expected
    job_ids = [
        j.decode() for q in ("default", "cron") for j in redis.lrange(f"rq:queue:{q}", 0, -1)
    ]
    assert len(job_ids) == len(set(job_ids)) == 6
    assert sorted(job_ids) == sorted(r.job_id for r in index.runs())
    # And exactly one process created each run; the 39 others were told it was deduplicated
    created = Counter(run["token"] for r in reports for run in r["runs"] if not run["deduplicated"])
    assert created == dict.fromkeys(expected, 1)
    # And the daily entry went to its own queue with its arguments
    daily = runs.get(slot_token("daily_report", SIX))
    assert daily is not None and daily.queue == "cron" and daily.args == {"edition": "am"}


def test_a_repeated_tick_reports_the_existing_runs_and_list_shows_them(
    invoke: Callable[..., Result], index: RunIndex
) -> None:
    # Given a tick at 06:00
    first = invoke("cron", "tick", "--at", "2026-11-27T06:00:40+00:00")
    assert first.exit_code == 0 and "every_minute@2026-11-27T06:00Z (new)" in first.stdout
    # When the same minute is ticked again
    again = invoke("cron", "tick", "--at", iso(SIX))
    # Then nothing new is enqueued, and each entry's run is reported as deduplicated
    assert again.exit_code == 0 and "(new)" not in again.stdout
    assert "every_minute@2026-11-27T06:00Z (deduplicated, queued)" in again.stdout
    assert len(index.runs()) == 6
    # And `cron list` has each entry in words, its next slot, last slot and its run's state
    listed = {
        row["name"]: row
        for row in map(json.loads, invoke("cron", "list", "--json").stdout.splitlines())
    }
    assert listed["every_minute"]["schedule"] == "every minute"
    assert listed["hourly"]["schedule"] == "hourly at :00"
    assert listed["daily"]["schedule"] == "daily at 06:00 UTC"
    assert listed["daily"]["queue"] == "cron" and listed["hourly"]["queue"] == "default"
    assert listed["daily"]["last_slot"] == "2026-11-27T06:00Z"
    assert listed["daily"]["last_run"] == "daily_report@2026-11-27T06:00Z"
    assert listed["daily"]["last_state"] == "queued"
    nxt = datetime.fromisoformat(listed["daily"]["next"])
    assert nxt > datetime.now(UTC) and (nxt.hour, nxt.minute) == (6, 0)
    assert "every minute" in invoke("cron", "list").stdout


# -- the clock -----------------------------------------------------------------------------


def test_two_clocks_side_by_side_fire_each_slot_once(
    settings: Settings,
    redis: Redis,
    runs: Runs,
    index: RunIndex,
    clocks: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    # Given two clocks whose time starts at 06:00 and runs 30 times faster
    both = [clocks("--at-start", iso(SIX), "--ticks", "3", speed=30) for _ in range(2)]
    # When each runs three minutes of clock time
    assert [c.wait(timeout=30) for c in both] == [0, 0]
    ticked = [
        [e["slot"] for e in clock_events(settings, tmp_path, index) if e["event"] == "cron.tick"]
        for index in range(2)
    ]
    assert all(len(t) == 3 and t[0] == "2026-11-27T06:00Z" for t in ticked)
    # Then the entry that allows overlaps fired each slot ticked once (06:00, 06:01, 06:02;
    # a tick late by over two seconds on a loaded machine would land on the next minute)
    slots = {slot for t in ticked for slot in t}
    assert tokens_of(index, "overlapping") == {f"overlapping@{slot}" for slot in slots}
    # And the skip-policy entries fired 06:00 only: their run was still queued afterwards
    assert tokens_of(index, "every_minute") == {slot_token("every_minute", SIX)}
    # And every run has exactly one RQ job
    job_ids = [
        j.decode() for q in ("default", "cron") for j in redis.lrange(f"rq:queue:{q}", 0, -1)
    ]
    assert Counter(job_ids) == Counter(r.job_id for r in index.runs())


def test_a_clock_back_after_ten_minutes_fires_by_the_catch_up_policy(
    index: RunIndex, clocks: Callable[..., subprocess.Popen[str]], drain: Callable[..., None]
) -> None:
    # Given a clock that ticked at 06:00, whose runs finished, and which then went down
    assert clocks("--at-start", iso(SIX), "--once").wait(timeout=30) == 0
    drain()
    # When a clock comes back at 06:10:30
    assert clocks("--at-start", iso(at(10.5)), "--once").wait(timeout=30) == 0
    # Then an every-minute entry with catch_up=1 fires once (06:10), not ten times
    every_minute = {slot_token("every_minute", m) for m in (SIX, at(10))}
    assert tokens_of(index, "every_minute") == every_minute
    # And the one with catch_up=3 fires the three newest missed slots
    assert tokens_of(index, "catch_up_three") == {
        slot_token("catch_up_three", m) for m in (SIX, at(8), at(9), at(10))
    }
    # And the hourly and daily entries, not due in between, fired nothing more
    assert len(tokens_of(index, "hourly_chime")) == len(tokens_of(index, "daily_report")) == 1


def test_a_slot_overlapping_a_running_run_is_skipped_and_logged(
    settings: Settings,
    redis: Redis,
    runs: Runs,
    index: RunIndex,
    invoke: Callable[..., Result],
    clocks: Callable[..., subprocess.Popen[str]],
    start_worker: Callable[..., WorkerProcess],
    enqueue: Callable[..., Enqueued],
    tmp_path: Path,
) -> None:
    # Given the `held` entry's 06:00 run running on a worker (it runs while HOLD_KEY is set)
    redis.set(HOLD_KEY, "1")
    assert invoke("cron", "tick", "--at", iso(SIX)).exit_code == 0
    held = slot_token("hold", SIX)
    start_worker()
    wait_for(lambda: runs.get(held).state == "running", what="the held run")  # type: ignore[union-attr]
    # When the clock ticks at 06:01
    assert clocks("--at-start", iso(at(1)), "--once").wait(timeout=30) == 0
    # Then the 06:01 slot was not fired, and the clock's JSON log on stdout says why
    assert runs.get(slot_token("hold", at(1))) is None
    [skip] = [e for e in clock_events(settings, tmp_path, 0) if e["event"] == "cron.skipped"]
    assert skip["entry"] == "held" and skip["skipped"] == [slot_token("hold", at(1))]
    assert skip["reason"] == f"previous run {held} is running"
    # And `runner logs` of the running run shows the skip
    logged = [json.loads(line) for line in invoke("logs", held, "--json").stdout.splitlines()]
    assert any(e["event"] == "cron.skipped" and e["previous"] == held for e in logged)
    # And a retried tick of 06:01 does not fire it either
    retried = map(
        json.loads, invoke("cron", "tick", "--at", iso(at(1)), "--json").stdout.splitlines()
    )
    [again] = [r for r in retried if r["entry"] == "held"]
    assert again["outcome"] == "skipped" and again["reason"] == "an earlier tick skipped it"
    # And once the run has finished, the next slot fires, and the skipped one never does
    redis.delete(HOLD_KEY)
    wait_for(lambda: runs.get(held).state == "succeeded", what="the held run to end")  # type: ignore[union-attr]
    assert invoke("cron", "tick", "--at", iso(at(2))).exit_code == 0
    assert tokens_of(index, "hold") == {held, slot_token("hold", at(2))}
    wait_for(lambda: runs.get(slot_token("hold", at(2))).state == "succeeded", what="06:02")  # type: ignore[union-attr]
    # And a run of the task enqueued by hand blocks the entry's slots while it runs too
    redis.set(HOLD_KEY, "1")
    enqueue("hold", token="by-hand")
    wait_for(lambda: runs.get("by-hand").state == "running", what="the manual run")  # type: ignore[union-attr]
    skipped = invoke("cron", "tick", "--at", iso(at(3))).stdout
    assert "skipped  held                 run by-hand of hold is running" in skipped
    redis.delete(HOLD_KEY)


@pytest.mark.slow
def test_the_clock_waits_out_a_redis_outage_and_stops_on_sigterm(
    settings: Settings,
    redis_server: RedisServer,
    index: RunIndex,
    clocks: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    # Given a running clock (time 60 times faster) that has fired a slot
    clock = clocks("--at-start", iso(SIX))
    wait_for(lambda: tokens_of(index, "overlapping"), what="a first slot")
    # When Redis goes away for three seconds (three clock minutes) and comes back
    redis_server.stop()
    time.sleep(3)
    redis_server.start()
    fired = len(tokens_of(index, "overlapping"))
    # Then the clock is still up, said Redis was unreachable, and fires again
    wait_for(lambda: len(tokens_of(index, "overlapping")) > fired, timeout=20, what="a new slot")
    assert clock.poll() is None
    events = clock_events(settings, tmp_path, 0)
    assert any(e["event"] == "redis.unreachable" for e in events)
    # When it gets SIGTERM, it stops cleanly
    clock.send_signal(signal.SIGTERM)
    assert clock.wait(timeout=10) == 0
    last = clock_events(settings, tmp_path, 0)[-1]
    assert last["event"] == "cron.clock.stopped" and last["signal"] == "SIGTERM"


@pytest.mark.slow
def test_a_clock_stuck_in_a_tick_stops_by_its_stop_deadline(
    settings: Settings, redis_server: RedisServer, index: RunIndex,
    clocks: Callable[..., subprocess.Popen[str]], tmp_path: Path,
) -> None:  # fmt: skip
    # Given a running clock whose Redis hangs (SIGSTOP: no reply, no error) under a tick
    clock = clocks("--at-start", iso(SIX), env={"RUNNER_STOP_SECONDS": "2"})
    wait_for(lambda: tokens_of(index, "overlapping"), what="a first slot")
    server = psutil.Process(int((redis_server.server.directory / "redis.pid").read_text()))
    server.suspend()
    try:
        time.sleep(1.5)  # the next tick (a clock minute is a real second) is stuck
        # When it gets SIGTERM
        clock.send_signal(signal.SIGTERM)
        # Then it stops by its stop deadline all the same, saying why
        assert clock.wait(timeout=10) == 0
    finally:
        server.resume()
    last = clock_events(settings, tmp_path, 0)[-1]
    assert last["event"] == "cron.clock.stopped" and last["signal"] == "SIGTERM, then SIGALRM"


def test_cron_in_process_ticks_the_given_schedule(settings: Settings, redis: Redis) -> None:
    # Given a Cron over one entry of the test registry
    registry = load_registry("tests.cron_tasks")
    cron = Cron(redis, settings, registry=registry, entries=[SCHEDULE[3]])
    # When it ticks at 06:30 and at 07:00
    quiet, due = cron.tick(at(30)), cron.tick(at(60))
    # Then the hourly entry is not due at 06:30, and fires at 07:00
    assert [f.outcome for f in quiet] == ["not_due"] and quiet[0].reason == "next 2026-11-27T07:00Z"
    assert [r.token for r in due[0].runs] == [slot_token("hourly_chime", at(60))]


class _SlowTick(Cron):
    """A tick that reads the marks, then lets another tick run to the end before it goes on:
    the interleaving of two clocks where the one behind writes last."""

    def __init__(self, *args: object, meanwhile: Callable[[], object], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.meanwhile = meanwhile

    def marks(
        self, *, now: datetime | None = None
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        seen = super().marks(now=now)
        self.meanwhile()
        return seen


def test_a_tick_that_planned_early_and_writes_late_never_moves_the_marks_back(
    settings: Settings, redis: Redis
) -> None:
    # Given a tick at 06:00 that reads the marks, then waits while a tick at 06:05 finishes
    registry = load_registry("tests.cron_tasks")
    entry = SCHEDULE[0]  # every minute
    ahead = Cron(redis, settings, registry=registry, entries=[entry])
    behind = _SlowTick(
        redis, settings, registry=registry, entries=[entry], meanwhile=lambda: ahead.tick(at(5))
    )
    # When the 06:00 tick writes its marks after the 06:05 one
    behind.tick(at(0))
    # Then the marks stay at 06:05 (a mark only moves forward), so 06:01..06:05 are not refired
    assert ahead.marks()[entry.name] == (at(5), at(5))


def test_a_tick_in_the_future_is_refused_and_never_stops_the_real_ticks(
    invoke: Callable[..., Result], index: RunIndex, redis: Redis, settings: Settings
) -> None:
    # Given a `cron tick --at` years ahead (the backfill of issue 14, point 1)
    future = invoke("cron", "tick", "--at", "2030-01-01T03:30Z")
    # Then it is refused in one line, as a usage error, and no mark moved
    assert future.exit_code == 2, future.output
    assert "in the future" in future.stderr and len(future.stderr.splitlines()) == 1
    assert index.runs() == []
    # And a real tick now fires the current minute's slot
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    real = invoke("cron", "tick", "--at", slot_text(now))
    assert f"every_minute@{slot_text(now)} (new)" in real.stdout, real.stdout
    # Given marks already pushed past now by an older runner (the damaged state of the issue)
    from runner.keys import Keys

    keys = Keys(settings.prefix)
    redis.set(keys.cron_last("every_minute"), "2030-01-01T03:30Z")
    redis.set(keys.cron_fired("every_minute"), "2030-01-01T03:30Z")
    # When the next real minute is ticked
    later = now + timedelta(minutes=1)
    if later > datetime.now(UTC):
        later = now  # the minute has not turned yet: tick the same one again
        redis.delete(keys.run(slot_token("every_minute", now)))
    tick = invoke("cron", "tick", "--at", slot_text(later))
    # Then it fires rather than saying an earlier tick handled it
    assert f"every_minute@{slot_text(later)} (new)" in tick.stdout, tick.stdout
    # And the tick repaired the marks: `cron list` shows the real last slot and the next one
    listed = {
        row["name"]: row
        for row in map(json.loads, invoke("cron", "list", "--json").stdout.splitlines())
    }
    assert listed["every_minute"]["last_slot"] == slot_text(later)
    assert redis.get(keys.cron_last("every_minute")) == slot_text(later).encode()
    assert datetime.fromisoformat(listed["every_minute"]["next"]) > datetime.now(UTC)


def test_a_backfill_of_a_past_minute_leaves_the_real_marks_alone(
    invoke: Callable[..., Result], runs: Runs
) -> None:
    # Given a real tick at the current minute
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    assert invoke("cron", "tick", "--at", slot_text(now)).exit_code == 0
    # When an operator backfills 06:00 four days ago
    backfill = invoke("cron", "tick", "--at", iso(SIX))
    assert backfill.exit_code == 0
    # Then the entries' last slots are still the real minute, so the next minute fires
    listed = {
        row["name"]: row
        for row in map(json.loads, invoke("cron", "list", "--json").stdout.splitlines())
    }
    assert listed["every_minute"]["last_slot"] == slot_text(now)
