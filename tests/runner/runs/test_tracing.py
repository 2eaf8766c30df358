"""Traces of runs (runner.runs.tracing), recorded by OpenTelemetry's SDK into its in-memory
exporter: real runs drained by an in-process horse, a real outbox relay, a real cron tick."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis import Redis

from runner.client.outbox import outbox_table
from runner.client.sync import Client
from runner.config import Settings
from runner.cron.ticks import Cron
from runner.keys import Keys
from runner.runs import tracing
from runner.runs.deploys import code_version
from runner.runs.enqueue import Enqueued
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.relay import Relay
from tests.cron_tasks import SCHEDULE
from tests.runner.cron.test_ticks import at


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider of this test's own (the process's global one stays unset), the
    runner's spans recorded in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("runner"))
    yield exporter
    provider.shutdown()


def producer() -> trace.Tracer:
    return TracerProvider().get_tracer("the site")


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def test_an_attempt_is_a_child_of_the_enqueuers_span_and_each_step_a_child_of_the_attempt(
    spans: InMemorySpanExporter, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    settings: Settings,
) -> None:  # fmt: skip
    with producer().start_as_current_span("POST /feeds") as request:
        token = enqueue("slow_steps", steps=2, seconds=0.0).token
    drain()
    [attempt] = named(spans, "run slow_steps")
    parent = request.get_span_context()
    assert attempt.parent is not None and attempt.parent.span_id == parent.span_id
    assert attempt.context is not None and attempt.context.trace_id == parent.trace_id
    assert dict(attempt.attributes or {}) == {
        "runner.token": token, "runner.task": "slow_steps", "runner.attempt": 1,
        "runner.code_version": code_version(settings),
    }  # fmt: skip
    steps = named(spans, "step ")
    assert [s.name for s in steps] == ["step s0", "step s1"]
    assert all(s.parent is not None and s.parent.span_id == attempt.context.span_id for s in steps)


def test_a_retried_attempt_links_to_the_failed_one_whose_span_says_why(
    spans: InMemorySpanExporter, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
) -> None:  # fmt: skip
    with producer().start_as_current_span("POST /feeds"):
        enqueue("flaky", failures=1)
    drain()
    first, second = named(spans, "run flaky")
    assert first.status.status_code == trace.StatusCode.ERROR
    assert "RuntimeError: boom (simulated)" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code == trace.StatusCode.UNSET
    assert first.context is not None and second.context is not None
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert second.context.trace_id == first.context.trace_id, "one trace: the enqueuer's"
    [failed_step] = [s for s in named(spans, "step fragile") if s.status.is_ok is False]
    assert failed_step.parent is not None and failed_step.parent.span_id == first.context.span_id


def test_a_run_relayed_from_the_outbox_keeps_the_producers_trace(
    spans: InMemorySpanExporter, redis: Redis, settings: Settings, tmp_path: Path,
    drain: Callable[..., None],
) -> None:  # fmt: skip
    url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = sa.create_engine(url)
    outbox_table(sa.MetaData()).create(engine)
    with producer().start_as_current_span("signup") as request, engine.begin() as connection:
        Client(redis, settings).enqueue_on_commit(connection, "greet", {"name": "ada"})
    relay = Relay(redis, replace(settings, outbox_url=url), engine=engine)
    assert relay.relay_once() == 1  # outside any span: the row carries the producer's
    drain()
    [attempt] = named(spans, "run greet")
    assert attempt.parent is not None
    assert attempt.parent.span_id == request.get_span_context().span_id


def test_a_cron_tick_starts_a_trace_whose_runs_are_its_children(
    spans: InMemorySpanExporter, redis: Redis, settings: Settings, runs: Runs,
) -> None:  # fmt: skip
    cron = Cron(redis, settings, registry=load_registry("tests.cron_tasks"),
                entries=[SCHEDULE[3]])  # fmt: skip
    [firing] = cron.tick(at(60))
    [tick] = named(spans, "cron tick")
    assert tick.parent is None and tick.context is not None
    record = runs.get(firing.runs[0].token)
    assert record is not None
    trace_id, span_id = record.traceparent.split("-")[1:3]
    assert (int(trace_id, 16), int(span_id, 16)) == (tick.context.trace_id, tick.context.span_id)


def test_without_a_tracer_provider_no_trace_field_is_written(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    assert tracing.current_traceparent() is None
    with producer().start_as_current_span("POST /feeds"):
        token = enqueue("flaky", failures=1).token
    drain()
    fields = redis.hgetall(Keys(settings.prefix).run(token))
    assert b"traceparent" not in fields and b"span" not in fields
