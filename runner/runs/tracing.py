"""Traces of runs, with OpenTelemetry when the site has it (the `otel` extra, and a tracer
provider the site sets up, e.g. `opentelemetry-instrument runner worker`).

A run carries the W3C trace context of whoever enqueued it: `traceparent` on its record, taken
from the enqueuing code's current span when the caller names none (the client, the outbox row,
a task's `run.enqueue`); a cron tick starts a trace of its own, whose runs are its children.
Each attempt is a span `run TASK` under that context, with the token, task, attempt and code
version as attributes; each step a child span `step NAME`; a failed attempt's span has status
ERROR with the exception. The release keeps the attempt's own context on the record (`span`),
so the next attempt (a retry, a rerun) links to it.

Without opentelemetry, or with no SDK tracer provider set, every function here does nothing
and returns None: no field written, no command, no round trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    trace = None  # type: ignore[assignment]

TRACER = "runner"


def _tracer() -> Any:
    """The runner's tracer, or None when nothing would record its spans."""
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER)


def current_traceparent() -> str | None:
    """The current span's W3C `traceparent`, or None (no tracing, or no span)."""
    if _tracer() is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def _context_of(traceparent: str) -> Any:
    return propagate.extract({"traceparent": traceparent})


@contextlib.contextmanager
def attempt_span(
    task: str, traceparent: str, previous: str, attributes: Mapping[str, Any]
) -> Iterator[None]:
    """The span of one attempt of a `task` run, current while the block runs: a child of the
    enqueuer's `traceparent` (a root without one), linked to the `previous` attempt's span."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    parent = _context_of(traceparent) if traceparent else otel_context.Context()
    links = []
    if previous:
        linked = trace.get_current_span(_context_of(previous)).get_span_context()
        if linked.is_valid:
            links.append(trace.Link(linked, {"runner.link": "previous attempt"}))
    with tracer.start_as_current_span(
        f"run {task}", context=parent, kind=trace.SpanKind.CONSUMER, links=links,
        attributes=dict(attributes), record_exception=False, set_status_on_exception=False,
    ):  # fmt: skip
        yield


@contextlib.contextmanager
def step_span(name: str, stopping: type[BaseException]) -> Iterator[None]:
    """A child span of the attempt for one step; an exception other than `stopping` (the
    attempt stopping for a cancel or a handover) marks it failed."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        f"step {name}", attributes={"runner.step": name}, record_exception=False,
        set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield
        except stopping:
            span.set_attribute("runner.stopped", True)
            raise
        except BaseException as exc:
            failed(exc)
            raise


def failed(exc: BaseException) -> None:
    """Mark the current span (the attempt's, or a step's) failed by `exc`."""
    if _tracer() is None:
        return
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


@contextlib.contextmanager
def root_span(name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """A span that starts a trace of its own (a cron tick), current while the block runs."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        name, context=otel_context.Context(), attributes=dict(attributes)
    ):
        yield
