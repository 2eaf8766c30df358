"""The pace of a long step's progress lines (runner.attempt.pace): one every so many
checkpoints or seconds, whichever comes first, with its rate."""

from __future__ import annotations

from runner.attempt.pace import ProgressPace


def test_a_line_is_due_every_so_many_checkpoints_then_the_count_starts_again() -> None:
    counters = {"posts": 0}
    pace = ProgressPace(counters, seconds=3600.0, checkpoints=3)

    due = []
    for done in range(1, 7):
        counters["posts"] = done * 10
        due.append(pace.due(counters))

    assert [d is not None for d in due] == [False, False, True, False, False, True]
    assert due[2] is not None and due[2]["checkpoints"] == 3
    assert due[2]["per_second"] >= 0.0


def test_with_no_time_between_lines_every_checkpoint_has_one() -> None:
    pace = ProgressPace({}, seconds=0.0, checkpoints=1_000)

    assert pace.due({"rows": 5}) is not None
    assert pace.due({"rows": 9}) is not None
