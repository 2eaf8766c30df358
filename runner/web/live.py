"""Live run pages: the run's new log events and state as server-sent events (/live/{token})."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from runner.logs import Entry, decode_entries
from runner.printable import printable_data
from runner.record import TERMINAL, RunRecord
from runner.web.console import Console, ConsoleDep
from runner.web.params import stream_id, whole_number
from runner.web.runview import LEVELS, event_row, run_summary, shown

router = APIRouter()
POLL_SECONDS = 0.3
STREAM_SECONDS = 300.0  # then the browser reconnects (EventSource does, with Last-Event-ID)
BATCH = 200
PER_CLIENT = 8  # live streams one client address may hold open at once (a tab each)


class StreamSlots:
    """The live streams open per client address (the app's `live_slots`): a client that opens
    more than PER_CLIENT, or never reads them, cannot take the server's memory."""

    def __init__(self, per_client: int = PER_CLIENT) -> None:
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        if self.open[client] >= self.per_client:
            return False
        self.open[client] += 1
        return True

    def give_back(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


@router.get("/live/{token:path}")
async def live_events(request: Request, console: ConsoleDep, token: str) -> Response:
    """`event: log` per new event after `after` (or Last-Event-ID), `event: run` when the run's
    state or counters change, `event: end` once it is finished and every event was sent."""
    after = stream_id(
        request.headers.get("last-event-id") or request.query_params.get("after", "0-0"), "after"
    )
    level = request.query_params.get("level", "")
    attempt = whole_number(request.query_params.get("attempt"), "attempt")
    stream = _events(
        request, console, token, after=after, level=level if level in LEVELS else "",
        attempt=attempt,
    )  # fmt: skip
    slots: StreamSlots = request.app.state.live_slots
    client = getattr(getattr(request.state, "visitor", None), "client", "unknown")
    if not slots.take(client):
        text = f"too many live streams from this address (at most {slots.per_client})\n"
        return PlainTextResponse(text, status_code=429, headers={"retry-after": "5"})
    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(
        _released(stream, slots, client), media_type="text/event-stream", headers=headers
    )


async def _released(
    stream: AsyncIterator[str], slots: StreamSlots, client: str
) -> AsyncIterator[str]:
    try:
        async for chunk in stream:
            yield chunk
    finally:
        slots.give_back(client)


async def _events(
    request: Request, console: Console, token: str, *, after: str, level: str,
    attempt: int | None,
) -> AsyncIterator[str]:  # fmt: skip
    deadline = time.monotonic() + STREAM_SECONDS
    last_summary = ""
    yield "retry: 1000\n\n"
    while time.monotonic() < deadline and not await request.is_disconnected():
        record, entries = await run_in_threadpool(_read, console, token, after)
        for event_id, event in entries:
            after = event_id
            if shown(event, level=level, attempt=attempt):
                yield _message("log", event_row(event_id, event), event_id=event_id)
        if record is None:
            yield _message("end", {"reason": "expired"})
            return
        summary = json.dumps(printable_data(run_summary(record)), sort_keys=True)
        if summary != last_summary:
            last_summary = summary
            yield f"event: run\ndata: {summary}\n\n"
        if not entries and record.state in TERMINAL:
            yield _message("end", {"state": record.state})
            return
        if len(entries) < BATCH:
            await asyncio.sleep(POLL_SECONDS)


def _read(console: Console, token: str, after: str) -> tuple[RunRecord | None, list[Entry]]:
    """The run record and up to BATCH events after stream id `after`."""
    pipe = console.redis.pipeline(transaction=False)
    pipe.hgetall(console.keys.run(token))
    pipe.xrange(console.keys.log(token), min=f"({after}", count=BATCH)
    raw, entries = pipe.execute()
    return (RunRecord.from_hash(raw) if raw else None), decode_entries(entries)


def _message(kind: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(printable_data(data))}\n\n"
