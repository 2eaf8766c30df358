"""One answer of health's four questions (runner.monitoring.answers): a verdict and one line."""

from __future__ import annotations

from runner.monitoring.answers import Answer, Verdict


def test_only_an_ok_verdict_is_ok() -> None:
    assert Answer("up", Verdict.OK, "2 workers").ok
    assert not Answer("up", Verdict.WARN, "1 worker").ok
    assert not Answer("up", Verdict.FAIL, "no worker").ok


def test_the_line_aligns_question_verdict_and_figures() -> None:
    line = Answer("slow", Verdict.FAIL, "p95 3.2 s", {"p95": 3.2}).line()

    assert line == "slow     FAIL  p95 3.2 s"
