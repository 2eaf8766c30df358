"""The noise rules of health's comparisons."""

from __future__ import annotations

import math

import pytest

from runner.config import HealthThresholds
from runner.monitoring.compare import compare, rate_changed, seconds_changed, shift_z
from runner.runs.figures import BOUNDS, Histogram, TaskFigures


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


def costed(*, wall: float, cpu: float, busy: float, runs: int = 40) -> TaskFigures:
    """Figures of `runs` attempts of a version: wall-clock duration, CPU and busy time."""
    f = figures(bucket_counts={wall: runs})
    f.cpu.buckets[BOUNDS.index(cpu)] += runs
    f.busy.buckets[BOUNDS.index(busy)] += runs
    return f


def test_a_busy_host_makes_attempts_wait_for_a_cpu_and_that_is_not_slower() -> None:
    limits = HealthThresholds()
    quiet = costed(wall=0.25, cpu=0.25, busy=0.25)
    loaded = costed(wall=0.5, cpu=0.25, busy=0.25)  # twice the wall time, the same work
    more_cpu = costed(wall=0.5, cpu=0.5, busy=0.5)
    waiting = costed(wall=2.5, cpu=0.25, busy=2.5)  # a sleep (an I/O stand-in) added

    assert compare("t", quiet, loaded, limits).text() == "t unchanged"
    assert compare("t", quiet, more_cpu, limits).text().startswith("t slower: cpu p50 +")
    assert "busy p50 +" in compare("t", quiet, waiting, limits).text()
    assert "cpu" not in compare("t", quiet, waiting, limits).text()
    # Figures of workers that recorded no CPU time: the wall-clock duration, as before
    assert compare("t", figures(bucket_counts={0.25: 40}), figures(bucket_counts={0.5: 40}),
                   limits).text().startswith("t slower: p50 +")  # fmt: skip


def test_cpu_time_that_moved_ten_milliseconds_and_a_quarter_is_a_change() -> None:
    tiny = costed(wall=0.25, cpu=0.01, busy=0.25)
    twice_as_tiny = costed(wall=0.25, cpu=0.025, busy=0.25)  # p50 0.005 -> 0.0175: +12.5 ms

    changes = compare("t", tiny, twice_as_tiny, HealthThresholds()).changes
    assert [c.name for c in changes] == ["cpu p50", "cpu p95"]


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


def test_the_rate_rule_draws_its_line_at_a_z_of_three() -> None:
    # 1 failure in 30 before; 9 in 30 after gives z 2.8 (noise), 10 in 30 gives z 3.2
    assert not rate_changed((1, 9), (30, 30))
    assert rate_changed((1, 10), (30, 30))


def test_a_failure_rate_change_reads_both_rates_and_only_a_rise_is_worse() -> None:
    limits = HealthThresholds()
    few = figures(bucket_counts={0.1: 40}, failed=2)
    many = figures(bucket_counts={0.1: 40}, failed=20)

    rise = compare("t", few, many, limits)
    assert rise.worse and rise.text() == "t failures 5.0% -> 50.0%"
    fall = compare("t", many, few, limits)
    assert fall.changes and fall.worse is False
    assert fall.text() == "t failures 50.0% -> 5.0%"
    assert compare("t", few, few, limits).worse is False


def test_a_time_changes_when_it_moves_by_more_than_a_quarter_and_at_least_the_floor() -> None:
    assert not seconds_changed(1.0, 1.1, 0.25)  # +10 %
    assert not seconds_changed(2.0, 2.4, 0.25)  # +20 %, though 0.4 s
    assert seconds_changed(2.0, 2.6, 0.25)  # +30 %
    assert seconds_changed(2.0, 1.4, 0.25)  # -30 %: a change too (faster)
    assert not seconds_changed(0.01, 0.05, 0.25)  # +400 %, but 40 ms: under the 100 ms floor
    assert seconds_changed(0.2, 0.3, 0.25)  # +50 % and the floor exactly
    assert not seconds_changed(None, 1.0, 0.25) and not seconds_changed(1.0, None, 0.25)


def test_wall_clock_times_that_moved_less_than_the_floor_are_unchanged() -> None:
    limits = HealthThresholds()
    # every run from 10-25 ms to 25-50 ms: the p50 triples, by 25 ms
    verdict = compare("t", figures(bucket_counts={0.025: 40}), figures(bucket_counts={0.05: 40}),
                      limits)  # fmt: skip
    assert verdict.enough and verdict.changes == ()


def test_a_slower_time_reads_as_a_percentage_of_the_earlier() -> None:
    slower = compare("t", figures(bucket_counts={0.25: 40}), figures(bucket_counts={1.0: 40}),
                     HealthThresholds())  # fmt: skip
    # p50 0.175 -> 0.75 s, p95 0.2425 -> 0.975 s
    assert slower.text() == "t slower: p50 +329%, p95 +302%"


def test_mann_whitney_z_of_known_samples() -> None:
    def histogram(counts: dict[float, int]) -> Histogram:
        h = Histogram()
        for bound, n in counts.items():
            h.buckets[BOUNDS.index(bound)] += n
        return h

    same = histogram({0.1: 5, 1.0: 5})
    assert shift_z(same, same) == 0.0
    low, high = histogram({0.1: 3}), histogram({1.0: 4})
    # all 4 above all 3: U = 12, mean 6, spread sqrt(3 * 4 * 8 / 12)
    assert shift_z(low, high) == pytest.approx(6 / math.sqrt(8))
    assert shift_z(high, low) == pytest.approx(-6 / math.sqrt(8))


def test_a_p95_that_moved_against_the_whole_distribution_is_not_a_change() -> None:
    limits = HealthThresholds()
    steady = figures(bucket_counts={0.5: 40})
    mixed = figures(bucket_counts={0.1: 34, 5.0: 6})  # 34 runs faster, 6 stalled

    faster = compare("t", steady, mixed, limits)  # p95 up, but most runs faster: only p50
    assert [c.name for c in faster.changes] == ["p50"] and not faster.worse
    slower = compare("t", mixed, steady, limits)  # p95 down, but most runs slower: only p50
    assert [c.name for c in slower.changes] == ["p50"] and slower.worse
