"""scripts/replay_scripts.py: a drain's Lua calls recorded, then made again on the state
before them, with the runner's scripts or a variant of one."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.runs.scripts import FENCED_WRITE
from scripts.replay_scripts import known_scripts, main, record, replay


def succeeded_with_steps(redis: Redis, settings: Settings) -> tuple[int, int]:
    keys = Keys(settings.prefix)
    tokens = [t.decode() for t in redis.zrange(keys.by_state("succeeded"), 0, -1)]
    return len(tokens), sum(bool(redis.exists(keys.steps(t))) for t in tokens)


def test_a_replay_makes_every_call_again_on_the_keys_as_they_were(
    redis: Redis, settings: Settings
) -> None:
    # Given five no-op runs (the site's, which write a step) drained by a horse whose Lua
    # calls were recorded
    settings = replace(settings, tasks_module="jobs")
    calls, snapshot = record(redis, settings, 5)
    known = known_scripts()
    made = Counter(known[sha][0] for sha, *_ in calls)
    for name in ("BEGIN_ATTEMPT", "FENCED_WRITE", "RELEASE_ATTEMPT", "TAKE_AHEAD"):
        assert made[name] >= 5, made
    assert succeeded_with_steps(redis, settings) == (5, 5)
    sources = {sha: known[sha][1] for sha, *_ in calls}
    # When they are replayed on the keys as they were before the drain
    stats = replay(redis, calls, snapshot, sources, slowlog=True)
    # Then the runs end as the drain left them, and each script's calls were timed
    assert succeeded_with_steps(redis, settings) == (5, 5)
    assert stats["cmdstat_evalsha"]["calls"] == len(calls)
    assert {known[sha][0] for sha in stats["by_sha"]} >= set(made) - {"MOVE_FIRST_JOB"}
    # And a variant replaces its script: a step write that writes nothing leaves no steps
    variant = {**sources, FENCED_WRITE.sha: "return 1"}
    replay(redis, calls, snapshot, variant, slowlog=False)
    assert succeeded_with_steps(redis, settings) == (5, 0)


@pytest.mark.parametrize("spec", ["NOT_A_SCRIPT=x.lua", "RELEASE_ATTEMPT", "FENCED_WRITE=/nope"])
def test_a_variant_that_names_no_script_or_file_is_refused_with_usage(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["5", "--variant", spec])

    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"replay_scripts.py: error: --variant {spec}: ")
