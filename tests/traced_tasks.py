"""The sample tasks (`RUNNER_TASKS=tests.traced_tasks`) in a site that sets up tracing in its
task module: an SDK tracer provider batching its spans (as in production) to the file named
by RUNNER_TEST_SPANS, one JSON object per line."""

from __future__ import annotations

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from tests.sample_tasks import registry

__all__ = ["registry"]


def _line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json())) + "\n"


provider = TracerProvider()
out = open(os.environ["RUNNER_TEST_SPANS"], "a")  # noqa: SIM115 (the process's whole life)
provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=out, formatter=_line)))
trace.set_tracer_provider(provider)
