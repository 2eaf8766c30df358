"""The small things of issue 14 through the CLI: rerun --force, attempts left, -h and
--version, option values checked by click types in one line, read-only commands that leave a
stopped embedded Redis stopped, and human output only on a terminal."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

from runner.enqueue import Enqueued
from runner.runs import Runs


def test_rerun_force_reruns_a_succeeded_run_and_logs_it_as_deliberate(
    invoke: Callable[..., Result], enqueue: Callable[..., Enqueued], drain: Callable[..., None],
    runs: Runs,
) -> None:  # fmt: skip
    # Given a succeeded run
    token = enqueue("counting", items=2, seconds=0.01).token
    drain()
    # When it is rerun without --force, it is refused with the way to do it
    refused = invoke("rerun", token)
    assert refused.exit_code == 1 and "--force" in refused.stdout
    # And with --force it is requeued, and its log says it was deliberate
    forced = invoke("rerun", token, "--force", "--from-scratch")
    assert forced.exit_code == 0 and forced.stdout.startswith("requeued"), forced.output
    drain()
    record = runs.get(token)
    assert record is not None and record.state == "succeeded" and record.attempt == 2
    events = [json.loads(line) for line in invoke("logs", token, "--json").stdout.splitlines()]
    (rerun,) = [e for e in events if e["event"] == "run.rerun"]
    assert rerun["forced"] is True and rerun["was"] == "succeeded"
