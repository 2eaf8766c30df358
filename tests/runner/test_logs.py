"""Logging: the processor chain to stdout and into a run's stream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
import structlog
from redis import Redis

from runner import logs
from runner.config import Settings
from runner.keys import Keys
from runner.record import Enqueued


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """`logs.configure()` writing JSON lines to a buffer; structlog and the root logger are
    put back afterwards."""
    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure(console=False, stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level


def test_a_password_in_a_logged_url_reaches_neither_stdout_nor_the_run_stream(
    configured: io.StringIO, redis: Redis, settings: Settings
) -> None:
    # Given logging configured as a worker does, and a run's log stream
    keys = Keys(settings.prefix)
    # When an event carries a Redis URL with a password, inside the run's log
    with logs.into_run_log(redis, keys.log("t-1"), maxlen=100):
        structlog.get_logger("test").warning("connected", url="redis://:s3cret@db.example:6379/0")
    # Then stdout and the stream both have the event, with the password hidden
    [line] = configured.getvalue().splitlines()
    [(_, streamed)] = logs.read_events(redis, keys, "t-1")
    for event in (json.loads(line), streamed):
        assert event["event"] == "connected"
        assert "db.example:6379" in event["url"] and "s3cret" not in event["url"]
    assert "s3cret" not in line


def test_the_stream_reads_oldest_first_from_a_point_and_newest_last(
    redis: Redis, settings: Settings
) -> None:
    # Given a run log of five events, written as the scripts and RunStream write them
    keys = Keys(settings.prefix)
    stream = logs.RunStream(redis, keys.log("t-2"), maxlen=100)
    for n in range(5):
        stream.append({"event": f"e{n}", "level": "info", "n": n})
    # When it is read whole, after its second entry, in pages, and its newest three
    whole = logs.read_events(redis, keys, "t-2")
    after_second = logs.read_events(redis, keys, "t-2", after=whole[1][0])
    first_two = logs.read_events(redis, keys, "t-2", count=2)
    newest = logs.newest_events(redis, keys, "t-2", count=3)
    # Then each is decoded to (stream id, event), oldest first
    assert [e["n"] for _, e in whole] == [0, 1, 2, 3, 4]
    assert [e["n"] for _, e in after_second] == [2, 3, 4]
    assert first_two == whole[:2]
    assert newest == whole[2:]


def test_the_events_one_script_writes_share_one_entry_and_read_in_order(
    redis: Redis, settings: Settings, enqueue: Callable[..., Enqueued],
    drain: Callable[..., None],
) -> None:  # fmt: skip
    # Given a run whose attempt wrote its events with its step and its release
    token = enqueue("slow_steps", token="one-entry", steps=1, seconds=0.0).token
    drain()
    keys = Keys(settings.prefix)
    # Then its events read in the order they happened, from fewer stream entries
    names = [e["event"] for _, e in logs.read_events(redis, keys, token)]
    assert names[-3:] == ["step.started", "step.finished", "run.succeeded"]
    assert redis.xlen(keys.log(token)) < len(names)
    # ... and the newest ones are the last ones, oldest first
    newest = [e["event"] for _, e in logs.newest_events(redis, keys, token, count=3)]
    assert newest == ["step.started", "step.finished", "run.succeeded"]
