"""Logging: structlog to stdout (JSON, or console on a terminal) and into each run's stream."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO, cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from runner.connections.redis import redact
from runner.keys import Keys

EventDict = MutableMapping[str, Any]
TEXT_MAX = 10_000  # characters of one stored text (an error message, a log field) kept


def capped(text: str, limit: int = TEXT_MAX) -> str:
    """`text`, cut to `limit` characters with a note of how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text) - limit:,} more characters]"


_stream: ContextVar[RunStream | None] = ContextVar("runner_run_stream", default=None)


class RunStream:
    """A run's capped Redis stream of events, where `runner logs` reads them.

    Buffered, info and debug events wait for the attempt's next write of progress, which
    appends them in the same Lua call (no extra round trip), or at most `max_delay` seconds
    for the lease renewer to flush them; warnings, errors and `flush()` write at once.
    stdout always has every event as it happens."""

    def __init__(
        self, redis: Redis, key: str, *, maxlen: int, buffered: bool = False,
        max_delay: float = 0.5,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.key = key
        self.maxlen = maxlen
        self.buffered = buffered
        self.max_delay = max_delay
        self.pending: list[str] = []
        self._since = 0.0
        self._lock = threading.Lock()

    def append(self, event: EventDict) -> None:
        event = {k: capped(v) if isinstance(v, str) else v for k, v in event.items()}
        self.append_json(json.dumps(event, default=str, separators=(",", ":")), event.get("level"))

    def append_json(self, body: str, level: object) -> None:
        """Append one event already rendered as JSON."""
        with self._lock:
            if not self.pending:
                self._since = time.monotonic()
            self.pending.append(body)
        if not self.buffered or level not in ("debug", "info"):
            self.flush()

    def take(self) -> list[str]:
        """The buffered events, handed to a write that appends them itself."""
        with self._lock:
            taken, self.pending = self.pending, []
        return taken

    def give_back(self, events: list[str]) -> None:
        """Events a failed write did not append: they go out with the next flush."""
        with self._lock:
            self.pending[:0] = events

    def flush(self) -> None:
        """Write the buffered events now; a log line never fails the work."""
        events = self.take()
        if not events:
            return
        pipe = self.redis.pipeline(transaction=False)
        for body in events:
            pipe.xadd(self.key, {"e": body}, maxlen=self.maxlen, approximate=True)
        with suppress(RedisError):
            pipe.execute()

    def flush_if_due(self) -> None:
        """Flush when the oldest buffered event has waited `max_delay` (the renewer calls it)."""
        if self.pending and time.monotonic() - self._since >= self.max_delay:
            self.flush()


def event_json(event: str, *, level: str = "info", **fields: Any) -> str:
    """One event as the processor chain would write it to a stream: the bound context, the
    fields, level and timestamp. For events written by a Lua call together with progress."""
    entry = {**structlog.contextvars.get_contextvars(), "event": event, **fields, "level": level}
    entry["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(entry, default=str, separators=(",", ":"))


@contextmanager
def into_run_log(redis: Redis, key: str, *, maxlen: int) -> Iterator[None]:
    """Within this block every structlog event also goes, at once, to the run log at `key`
    (for events about a run written from outside its attempt: reaper, rerun, cron)."""
    with streaming_to(RunStream(redis, key, maxlen=maxlen)):
        yield


@contextmanager
def streaming_to(stream: RunStream | None) -> Iterator[None]:
    """Within this block every structlog event also goes to `stream` (None: to no stream)."""
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


def _render_json(_: Any, __: str, event: EventDict) -> str:
    """The JSON renderer, which also hands the same line to the run's stream (one encoding)."""
    line = json.dumps(event, default=str, separators=(",", ":"))
    stream = _stream.get()
    if stream is not None:
        stream.append_json(line, event.get("level"))
    return line


def _cap_texts(_: Any, __: str, event: EventDict) -> EventDict:
    """Every text field (a traceback, a message) at most TEXT_MAX characters, with a note."""
    for name, value in event.items():
        if isinstance(value, str) and len(value) > TEXT_MAX:
            event[name] = capped(value)
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
    tail: list[Any] = (
        [
            structlog.processors.format_exc_info,
            _cap_texts,
            _to_run_stream,
            structlog.dev.ConsoleRenderer(),
        ]
        if console
        else [structlog.processors.format_exc_info, _cap_texts, _render_json]
    )
    renderer = tail[-1] if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, *tail],
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


Entry = tuple[str, dict[str, Any]]  # a run log's event: (stream id, event)


def decode_entries(reply: Any) -> list[Entry]:
    """A run log's XRANGE reply as (stream id, event) pairs, in the reply's order: the one
    decoder of the stream. An entry holds one event (JSON under field `e`) or the several one
    script wrote (`es`, a JSON array, oldest first), which share its id."""
    out: list[Entry] = []
    for eid, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], reply):
        if b"es" in fields:
            out += [(eid.decode(), event) for event in json.loads(fields[b"es"])]
        else:
            out.append((eid.decode(), json.loads(fields[b"e"])))
    return out


def read_events(
    redis: Redis, keys: Keys, token: str, *, after: str = "-", count: int | None = None
) -> list[Entry]:
    """The run's events after stream id `after` (exclusive when given), oldest first; from at
    most `count` stream entries (None: all; an entry holds one event or a script's few)."""
    start = "-" if after == "-" else f"({after}"
    return decode_entries(redis.xrange(keys.log(token), min=start, count=count))


def newest_events(redis: Redis, keys: Keys, token: str, *, count: int) -> list[Entry]:
    """The run's newest `count` events, oldest first."""
    newest = cast(list[Any], redis.xrevrange(keys.log(token), count=count))
    return decode_entries(newest[::-1])[-count:]


def follow_events(
    redis: Redis, keys: Keys, token: str, *, is_done: Any, poll: float = 1.0
) -> Iterator[Entry]:
    """Every entry, then new ones as they come, until `is_done()` and the stream is drained."""
    last = "-"
    while True:
        batch = read_events(redis, keys, token, after=last)
        for eid, event in batch:
            last = eid
            yield eid, event
        if not batch:
            if is_done():
                if not read_events(redis, keys, token, after=last):
                    return
                continue
            time.sleep(poll)


def later(eid: str, than: str) -> bool:
    """Whether stream id `eid` comes after `than` ('-': before every id)."""
    if than == "-":
        return True
    ms, _, seq = eid.partition("-")
    ms_than, _, seq_than = than.partition("-")
    return (int(ms), int(seq or 0)) > (int(ms_than), int(seq_than or 0))
