"""The overview on real Redis and real worker processes: the four questions, charts, queues,
workers and the run each is executing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from runner.runs.transitions import Runs
from runner.web.charts import stacked_bars
from tests.conftest import state_of, wait_for


def answer_row(html: str, question: str) -> str:
    match = re.search(rf'<tr class="answer[^"]*" id="answer-{question}">(.*?)</tr>', html, re.S)
    assert match, question
    return match.group(1)


def test_the_failing_line_links_each_recent_failure_and_the_chart_counts_them(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    bad = [enqueue("broken", token=f"bad-{i}").token for i in range(2)]
    enqueue("noop")
    drain()
    html = client.get("/").text
    failing = answer_row(html, "failing")
    assert "broken: 2 of 2 runs failed in the last hour" in failing  # runner health's line
    for token in bad:
        assert f'href="/runs/{token}"' in failing
    assert html.count('<rect class="bar-failed" x=') == 1  # one 10-minute bucket holds both
    assert "the source does not exist (simulated)" in failing


def test_with_nothing_failed_the_failing_line_is_ok(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None]
) -> None:
    enqueue("noop")
    drain()
    failing = answer_row(client.get("/").text, "failing")
    assert '"verdict verdict-ok">ok' in failing and "no run failed" in failing
    assert "failed in the last 24 hours" not in failing


def test_workers_show_the_run_they_execute_and_queues_their_backlog(
    client: TestClient, enqueue: Callable[..., Any], start_worker: Callable[..., Any],
    runs: Runs,
) -> None:  # fmt: skip
    up = answer_row(client.get("/").text, "up")
    assert "FAIL" in up and "no worker alive" in up
    long_run = enqueue("counting", items=400, seconds=0.05, probed=False).token
    waiting = [enqueue("noop", token=f"later-{i}").token for i in range(3)]
    worker = start_worker()
    wait_for(lambda: state_of(runs, long_run) == "running", what="the long run to start")
    html = client.get("/").text
    assert '"verdict verdict-ok">ok' in answer_row(html, "up")
    workers = html.split("<h2>Workers</h2>")[1]
    assert f'href="/runs/{long_run}"' in workers
    queues = html.split("<h2>Queues</h2>")[1].split("</table>")[0]
    assert re.search(r'default</a></td><td class="num">3</td>', queues), queues
    worker.kill_group()  # the long run would take 20 s to finish
    assert all(state_of(runs, t) == "queued" for t in waiting)


def test_a_deploy_mark_is_a_labelled_vertical_line_where_it_happened() -> None:
    chart = stacked_bars(
        "runs", start=0.0, step=600.0, series={"succeeded": [1, 2, 3], "failed": [0, 1, 0]},
        marks=[(650.0, "v2"), (99999.0, "outside")],
    )  # fmt: skip
    marks = [s for s in chart.shapes if s.css == "mark"]
    labels = [s.text for s in chart.shapes if s.css == "mark-label"]
    assert labels == ["v2"] and len(marks) == 1
    bars = [s for s in chart.shapes if s.kind == "rect"]
    assert len(bars) == 4  # zero segments are not drawn
    tallest = max(bars, key=lambda s: s.h)
    first_bar = next(s for s in bars if s.css == "bar-succeeded")
    assert marks[0].x > first_bar.x and tallest.h > first_bar.h
