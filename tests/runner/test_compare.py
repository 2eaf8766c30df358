"""The noise rules of health's comparisons."""

from __future__ import annotations

from runner.compare import compare, rate_changed, shift_z
from runner.config import HealthThresholds
from runner.figures import BOUNDS, Histogram, TaskFigures


def figures(*, bucket_counts: dict[float, int], failed: int = 0) -> TaskFigures:
    f = TaskFigures()
    for bound, n in bucket_counts.items():
        f.duration.buckets[BOUNDS.index(bound)] += n
        f.wait.buckets[0] += n
    f.counts["succeeded"] = sum(bucket_counts.values()) - failed
    f.counts["failed"] = failed
    return f


def test_a_few_stalled_runs_are_noise_every_run_slower_is_a_change() -> None:
    limits = HealthThresholds()
    before = figures(bucket_counts={0.1: 40})
    stalled = figures(bucket_counts={0.1: 37, 1.0: 3})  # p95 jumps, most runs unchanged
    slower = figures(bucket_counts={0.5: 40})

    assert compare("t", before, stalled, limits).changes == ()
    changed = compare("t", before, slower, limits)
    assert [c.name for c in changed.changes] == ["p50", "p95"] and changed.worse
    assert (
        shift_z(before.duration, slower.duration) > 3 > shift_z(before.duration, stalled.duration)
    )


def test_rates_need_enough_runs_and_a_real_difference() -> None:
    assert rate_changed((0, 10), (30, 30))
    assert not rate_changed((0, 1), (30, 30))  # one failure in 30: noise
    assert not compare("t", figures(bucket_counts={0.1: 5}), figures(bucket_counts={0.1: 5}),
                       HealthThresholds()).enough  # fmt: skip
    assert Histogram().count == 0


def test_too_few_runs_on_the_smaller_side_means_no_verdict_whichever_side_it_is() -> None:
    limits = HealthThresholds()  # min_runs 20 per side
    many = figures(bucket_counts={0.1: 40})
    few_and_bad = figures(bucket_counts={1.0: 5}, failed=5)  # slower and failing, but 5 runs
    just_enough = figures(bucket_counts={1.0: limits.min_runs}, failed=limits.min_runs)

    for before, after in ((many, few_and_bad), (few_and_bad, many)):
        verdict = compare("t", before, after, limits)
        assert not verdict.enough and verdict.changes == ()
        assert "too few runs" in verdict.text()
    assert compare("t", many, few_and_bad, limits).text() == (
        "t: too few runs (40 before, 5 after)"
    )
    enough = compare("t", many, just_enough, limits)
    assert enough.enough and enough.worse  # the smaller side at min_runs: a verdict
