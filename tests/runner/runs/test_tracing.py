"""Traces of runs (runner.runs.tracing): attempts are spans under their enqueuer's span, through
the outbox and cron ticks, with a child span per step, and a retry links to the attempt before
it. Real Redis, attempts in-process (`work`); the SDK's in-memory exporter, no collector."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode
from opentelemetry.util._once import Once
from redis import Redis

from runner.client.aio import AsyncClient
from runner.client.outbox import outbox_table
from runner.client.sync import Client
from runner.config import Settings
from runner.cron.schedule import CronEntry
from runner.cron.ticks import Cron
from runner.runs import tracing
from runner.runs.deploys import code_version
from runner.runs.enqueue import Enqueued, Enqueuer, Request
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.worker.relay import Relay
from tests.conftest import ROOT, WorkerProcess, wait_for


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A tracer provider of this test's own, exporting to memory; the API's globals are reset
    after (as opentelemetry-test-utils' `reset_trace_globals` does), so no other test traces."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


def named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if (s.name or "").startswith(prefix)]


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return (span.parent.trace_id, span.parent.span_id) if span.parent else None


def ids(span: ReadableSpan | trace.Span | SpanContext) -> tuple[int, int]:
    context = span if isinstance(span, SpanContext) else span.get_span_context()
    return context.trace_id, context.span_id


def test_an_attempt_is_a_child_of_the_enqueuers_span_with_a_child_span_per_step(
    spans: InMemorySpanExporter, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    settings: Settings,
) -> None:  # fmt: skip
    # Given a run enqueued inside the application's span
    with trace.get_tracer("site").start_as_current_span("POST /publish") as request:
        token = enqueue("flaky", failures=0).token
    # When a worker runs it
    work()
    # Then its attempt is a span under the request's, with the run's attributes
    (attempt,) = named(spans, "run ")
    assert parent_of(attempt) == ids(request)
    assert attempt.name == "run flaky" and attempt.kind == trace.SpanKind.CONSUMER
    attributes = dict(attempt.attributes or {})
    assert {k: attributes[k] for k in ("runner.token", "runner.task", "runner.attempt")} == {
        "runner.token": token, "runner.task": "flaky", "runner.attempt": 1
    }  # fmt: skip
    assert attributes["runner.code_version"] == code_version(settings)
    assert attributes["runner.outcome"] == "succeeded"
    assert attempt.status.status_code != StatusCode.ERROR
    # ... and each step a span under the attempt's
    steps = named(spans, "step ")
    assert [s.name for s in steps] == ["step before", "step fragile"]
    assert {parent_of(s) for s in steps} == {ids(attempt)}


def test_a_retried_attempt_links_to_the_failed_one_which_records_its_exception(
    spans: InMemorySpanExporter, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    runs: Runs,
) -> None:  # fmt: skip
    # Given a run whose first attempt fails in a step
    with trace.get_tracer("site").start_as_current_span("enqueue") as origin:
        token = enqueue("flaky", failures=1, mode="attempt").token
    # When it is worked until it succeeds (its second attempt)
    drain()
    first, second = sorted(named(spans, "run "), key=lambda s: s.attributes["runner.attempt"])  # type: ignore[index]
    # Then the first attempt and its step failed, with the exception
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes["runner.outcome"] == "retrying"  # type: ignore[index]
    (failed_step,) = [s for s in named(spans, "step fragile") if parent_of(s) == ids(first)]
    assert failed_step.status.status_code == StatusCode.ERROR
    (event,) = failed_step.events
    assert event.name == "exception" and "boom" in str(event.attributes["exception.message"])  # type: ignore[index]
    # ... and the second, in the same trace, links to the first
    assert parent_of(second) == ids(origin)
    assert [ids(link.context) for link in second.links] == [ids(first)]
    assert second.status.status_code != StatusCode.ERROR
    record = runs.get(token)
    assert record is not None and record.span.split("-")[2] == f"{second.context.span_id:016x}"


def test_a_run_enqueued_through_the_outbox_keeps_the_producers_trace(
    spans: InMemorySpanExporter, tmp_path: Path, redis: Redis, settings: Settings,
    work: Callable[[], None],
) -> None:  # fmt: skip
    # Given a run written into the outbox inside the producer's span
    url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = sa.create_engine(url)
    outbox_table(sa.MetaData()).create(engine)
    with (
        trace.get_tracer("site").start_as_current_span("checkout") as producer,
        engine.begin() as conn,
    ):
        Client(redis, settings).enqueue_on_commit(conn, "greet", {"name": "ada"})
    # When the relay moves it to Redis (outside any span) and a worker runs it
    assert Relay(redis, replace(settings, outbox_url=url), engine=engine).relay_once() == 1
    work()
    # Then its attempt is a child of the producer's span
    (attempt,) = named(spans, "run greet")
    assert parent_of(attempt) == ids(producer)


def test_a_cron_tick_starts_a_trace_whose_runs_are_its_children(
    spans: InMemorySpanExporter, redis: Redis, settings: Settings, work: Callable[[], None]
) -> None:
    # Given an entry due every minute
    registry = load_registry(settings.tasks_module)
    entry = CronEntry("greeting", "* * * * *", task="greet", args={"name": "cron"})
    cron = Cron(redis, settings, registry=registry, entries=[entry])
    # When a tick fires it, inside an unrelated span, and a worker runs the run
    with trace.get_tracer("site").start_as_current_span("unrelated") as unrelated:
        cron.tick(datetime(2026, 11, 27, 6, 0, tzinfo=UTC), now=datetime.now(UTC))
    work()
    # Then the tick is a trace of its own, and the run's attempt is its child
    (tick,) = named(spans, "cron tick")
    assert tick.parent is None and tick.context.trace_id != unrelated.get_span_context().trace_id
    assert tick.attributes == {"runner.minute": "2026-11-27T06:00Z", "runner.fired": 1}
    (attempt,) = named(spans, "run greet")
    assert parent_of(attempt) == ids(tick)


def test_without_a_tracer_provider_nothing_is_traced_nor_written(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis
) -> None:
    # Given no tracer provider (the API's proxy), a run enqueued inside an API span
    with trace.get_tracer("site").start_as_current_span("request"):
        assert tracing.carrier() == {}
        token = enqueue("flaky", failures=1).token
    # When it is worked through a retry
    drain()
    # Then its record has no trace field at all
    fields = {k.decode() for k in redis.hkeys(f"runner:run:{token}")}
    assert fields and not fields & {"traceparent", "tracestate", "span"}


def test_a_worker_process_exports_its_batched_spans_before_its_horse_exits(
    redis: Redis, settings: Settings, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a run enqueued with a caller's traceparent, and a site that batches its spans
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    task = load_registry(settings.tasks_module).get("flaky")
    Enqueuer(redis, settings).enqueue(Request(task, {"failures": 0}, traceparent=parent))
    exported = tmp_path / "spans.jsonl"
    # When a `runner worker --burst` runs it and exits (its horse ends with os._exit)
    worker = start_worker("--burst", RUNNER_TASKS="tests.traced_tasks",
                          RUNNER_TEST_SPANS=str(exported))  # fmt: skip
    assert worker.process.wait(timeout=60) == 0, worker.output()
    # Then the attempt's and the steps' spans reached the exporter, under the caller's span
    spans = [json.loads(line) for line in exported.read_text().splitlines()]
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"run flaky", "step before", "step fragile"}
    attempt = by_name["run flaky"]
    assert attempt["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"
    assert attempt["parent_id"] == "0xb7ad6b7169203331"
    assert by_name["step fragile"]["parent_id"] == attempt["context"]["span_id"]


def test_a_rerun_of_a_failed_run_links_to_its_failed_attempt(
    spans: InMemorySpanExporter, enqueue: Callable[..., Enqueued], work: Callable[[], None],
    redis: Redis, settings: Settings,
) -> None:  # fmt: skip
    # Given a run that failed for good
    token = enqueue("broken", permanent=True).token
    work()
    (failed,) = named(spans, "run broken")
    assert failed.status.status_code == StatusCode.ERROR
    # When an operator reruns it and a worker runs it again
    rerun(redis, settings, token)
    work()
    # Then the new attempt links to the failed one
    rerun_attempt = next(s for s in named(spans, "run broken") if s is not failed)
    assert [ids(link.context) for link in rerun_attempt.links] == [ids(failed)]


@pytest.mark.slow
def test_the_attempt_after_a_handover_links_to_the_handed_over_one(
    redis: Redis, settings: Settings, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    # Given a run in its first step on worker A, which batches its spans to a file
    token = (
        Enqueuer(redis, settings)
        .enqueue(Request(load_registry(settings.tasks_module).get("slow_steps"), {"steps": 4}))
        .token
    )
    exported = tmp_path / "spans.jsonl"
    traced = {"RUNNER_TASKS": "tests.traced_tasks", "RUNNER_TEST_SPANS": str(exported)}
    a = start_worker("--name", "A", **traced)
    wait_for(lambda: redis.lindex(f"probe:exec:{token}", 0), what="the first step on A")
    # When A is stopped (it hands the run over at the next step) and B finishes the run
    a.process.send_signal(signal.SIGTERM)
    assert a.process.wait(timeout=30) == 0, a.output()
    b = start_worker("--burst", "--name", "B", **traced)
    assert b.process.wait(timeout=60) == 0, b.output()
    # Then B's attempt links to A's, which says it handed the run over
    attempts = [s for s in map(json.loads, exported.read_text().splitlines())
                if s["name"] == "run slow_steps"]  # fmt: skip
    first, second = sorted(attempts, key=lambda s: s["attributes"]["runner.attempt"])
    assert first["attributes"]["runner.outcome"] == "handed_over"
    assert second["attributes"]["runner.outcome"] == "succeeded"
    assert [link["context"]["span_id"] for link in second["links"]] == [first["context"]["span_id"]]


WITHOUT_OPENTELEMETRY = """
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed: every import of it fails
import runner.worker.horse, runner.cron.ticks, runner.client.sync
from runner.runs import tracing
with tracing.attempt_span("run t", parent="", parent_state="", previous="", attributes={}):
    with tracing.step_span("s", passing=()):
        tracing.failed(ValueError("x"))
        tracing.annotate({"runner.outcome": "failed"})
with tracing.new_trace("cron tick", {}):
    assert tracing.carrier() == {} and tracing.current_traceparent() == ""
tracing.flush()
print("untraced")
"""


def test_without_opentelemetry_installed_the_runner_imports_and_traces_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_OPENTELEMETRY], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "untraced"), done.stderr


def test_the_asyncio_client_carries_the_current_span_of_its_task(
    spans: InMemorySpanExporter, settings: Settings, runs: Runs
) -> None:
    # Given an asyncio application enqueueing inside its span
    async def main() -> tuple[str, trace.Span]:
        client = AsyncClient.from_url(settings.redis_url or "", settings=settings)
        try:
            with trace.get_tracer("site").start_as_current_span("GET /feed") as span:
                return (await client.enqueue("greet", {"name": "ada"})).token, span
        finally:
            await client.aclose()

    token, span = asyncio.run(main())
    # Then the run's record carries that span's context
    record = runs.get(token)
    ctx = span.get_span_context()
    assert record is not None
    assert record.traceparent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def test_runner_show_names_the_trace_of_a_traced_run(
    redis: Redis, settings: Settings, invoke: Callable[..., Result]
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    greet = load_registry(settings.tasks_module).get("greet")
    token = Enqueuer(redis, settings).enqueue(Request(greet, {"name": "ada"}, traceparent=parent))
    shown = invoke("show", token.token).stdout
    assert "trace:      0af7651916cd43dd8448eb211c80319c (its enqueuer's" in shown
    assert json.loads(invoke("show", "--json", token.token).stdout)["trace_id"] == (
        "0af7651916cd43dd8448eb211c80319c"
    )
