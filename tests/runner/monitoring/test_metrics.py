"""The Prometheus exposition (runner.monitoring.metrics), rendered from real runs: one family
per name, runs counted by outcome and by state, no per-run label."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from runner.config import Settings
from runner.monitoring.metrics import render
from runner.runs.enqueue import Enqueued


def test_runs_are_counted_once_per_family_by_outcome_and_by_state(
    enqueue: Callable[..., Enqueued], drain: Callable[..., None], redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    tokens = [enqueue("noop", token=f"ok-{i}").token for i in range(3)]
    tokens.append(enqueue("broken", token="bad-0", permanent=True).token)
    drain()

    text = render(redis, settings).decode()
    families = list(text_string_to_metric_families(text))

    names = Counter(f.name for f in families)
    assert names and max(names.values()) == 1, f"a name in two families: {names}"
    found = {f.name: f for f in families}
    total = {
        (s.labels["task"], s.labels["outcome"]): s.value
        for s in found["runner_runs"].samples if s.name == "runner_runs_total"
    }  # fmt: skip
    assert total[("noop", "succeeded")] == 3.0 and total[("broken", "failed")] == 1.0
    by_state = {s.labels["state"]: s.value for s in found["runner_runs_by_state"].samples}
    assert (by_state["succeeded"], by_state["failed"], by_state["queued"]) == (3.0, 1.0, 0.0)
    assert not any(token in text for token in tokens), "never a per-run label"
