"""Traces of runs, with OpenTelemetry, when the site set up a tracer provider (README, Traces).

A run carries the W3C trace context of whoever enqueued it (`traceparent` and `tracestate`
on its record, from the enqueuing code's current span when the caller names none: the client,
the outbox row, a task's `run.enqueue`); a cron tick starts a trace of its own. Each attempt is
a span `run TASK` under that context, each step a child span `step NAME`; a failed one has
status ERROR and the exception. An attempt's release keeps its span's context on the record
(`span`), so the next attempt (a retry, a rerun) links to it.

Nothing here imports opentelemetry: while nothing set a tracer provider (which imports
`opentelemetry.trace`), or the provider is the API's no-op one, every function does nothing,
and no field is written: no byte, command or round trip on a job's path.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

TRACER = "runner"
_cache: list[Any] = [None, None]  # [provider, its tracer]


def _tracer() -> Any:
    """The runner's tracer, or None when no SDK-like provider would record its spans."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # nothing set a provider up: no import, no cost
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    if _cache[0] is not provider:
        _cache[:] = [provider, provider.get_tracer(TRACER)]
    return _cache[1]


def _w3c() -> Any:
    # W3C's format always (the fields say so), whatever OTEL_PROPAGATORS picks for HTTP
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def carrier() -> dict[str, str]:
    """The current span's W3C context (`traceparent`, and `tracestate` when it has one), or {}
    (no tracing, no current span)."""
    if _tracer() is None:
        return {}
    found: dict[str, str] = {}
    _w3c().inject(found)
    return found


def _context(traceparent: str, tracestate: str = "") -> Any:
    """The context of a stored `traceparent`: an empty one (a new trace) if it is none."""
    from opentelemetry.context import Context

    fields = {"traceparent": traceparent, "tracestate": tracestate}
    return _w3c().extract({k: v for k, v in fields.items() if v}, context=Context())


@contextlib.contextmanager
def attempt_span(
    name: str, *, parent: str, parent_state: str, previous: str, attributes: Mapping[str, Any]
) -> Iterator[None]:
    """Make the span of one attempt current while the block runs: a child of the enqueuer's
    `parent` traceparent (a trace of its own without one), linked to the `previous` attempt's
    span when there is one."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    from opentelemetry import trace

    links = []
    if previous:
        linked = trace.get_current_span(_context(previous)).get_span_context()
        if linked.is_valid:
            links.append(trace.Link(linked, {"runner.link": "previous attempt"}))
    with tracer.start_as_current_span(
        name, context=_context(parent, parent_state), kind=trace.SpanKind.CONSUMER,
        links=links, attributes=dict(attributes), record_exception=False,
        set_status_on_exception=False,
    ):  # fmt: skip
        yield


@contextlib.contextmanager
def step_span(name: str, *, passing: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Make a child span of the attempt's current while one step runs; an exception escaping
    it marks it failed, but those in `passing` (the attempt stopping, not the step failing)."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        f"step {name}", attributes={"runner.step": name}, record_exception=False,
        set_status_on_exception=False,
    ):  # fmt: skip
        try:
            yield
        except passing:
            raise
        except BaseException as exc:
            failed(exc)
            raise


@contextlib.contextmanager
def new_trace(name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """Make a span that starts a trace of its own (a cron tick) current while the block runs."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    from opentelemetry.context import Context

    with tracer.start_as_current_span(name, context=Context(), attributes=dict(attributes)):
        yield


def failed(exc: BaseException) -> None:
    """Mark the current span (an attempt's, a step's) failed by `exc`, with the exception."""
    if _tracer() is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add `attributes` to the current span (an attempt's outcome, when it is known)."""
    if _tracer() is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(dict(attributes))


def current_traceparent() -> str:
    """The current span's traceparent ('' without tracing): what the next attempt links to."""
    return carrier().get("traceparent", "")


def flush() -> None:
    """Export the spans still buffered (a horse ends with `os._exit`: no atexit hook runs)."""
    if _tracer() is not None and hasattr(_cache[0], "force_flush"):
        _cache[0].force_flush()
