"""Logging: structlog to stdout (JSON, or console on a terminal) and into each run's stream."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, TextIO, cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from runner.keys import Keys
from runner.redis import redact

EventDict = MutableMapping[str, Any]
_stream: ContextVar[RunStream | None] = ContextVar("runner_run_stream", default=None)


class RunStream:
    """Appends a run's events to its capped Redis stream, where `runner logs` reads them."""

    def __init__(self, redis: Redis, key: str, *, maxlen: int) -> None:
        self.redis = redis
        self.key = key
        self.maxlen = maxlen

    def append(self, event: EventDict) -> None:
        body = json.dumps(event, default=str, separators=(",", ":"))
        with suppress(RedisError):  # a log line never fails the work; stdout still has it
            self.redis.xadd(self.key, {"e": body}, maxlen=self.maxlen, approximate=True)


@contextmanager
def streaming_to(stream: RunStream) -> Iterator[None]:
    """Within this block every structlog event also goes to `stream`."""
    reset = _stream.set(stream)
    try:
        yield
    finally:
        _stream.reset(reset)


def _to_run_stream(_: Any, __: str, event: EventDict) -> EventDict:
    stream = _stream.get()
    if stream is not None:
        stream.append(event)
    return event


def _hide_secrets(_: Any, __: str, event: EventDict) -> EventDict:
    for name, value in event.items():
        if isinstance(value, str) and "://" in value and "@" in value:
            event[name] = redact(value)
    return event


def configure(
    *, console: bool | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger (RQ's lines too): JSON lines, or a
    console rendering on a terminal, to `stream` (stdout for workers, stderr for commands)."""
    stream = stream or sys.stdout
    console = stream.isatty() if console is None else console
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _hide_secrets,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _to_run_stream, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("rq.worker").setLevel(logging.WARNING)  # the runner logs each job itself


def read_events(
    redis: Redis, keys: Keys, token: str, *, after: str = "-"
) -> list[tuple[str, dict[str, Any]]]:
    """The run's events after stream id `after` (exclusive when given), oldest first."""
    start = "-" if after == "-" else f"({after}"
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(keys.log(token), min=start))
    return [(eid.decode(), json.loads(fields[b"e"])) for eid, fields in entries]


def follow_events(
    redis: Redis, keys: Keys, token: str, *, is_done: Any, poll: float = 1.0
) -> Iterator[dict[str, Any]]:
    """Every event, then new ones as they come, until `is_done()` and the stream is drained."""
    last = "-"
    while True:
        batch = read_events(redis, keys, token, after=last)
        for eid, event in batch:
            last = eid
            yield event
        if not batch:
            if is_done():
                if not read_events(redis, keys, token, after=last):
                    return
                continue
            time.sleep(poll)
