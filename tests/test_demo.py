"""`./scripts/demo` end to end: the crash resumed on another worker, the failed run rerun."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from runner.connections.redis import EmbeddedRedis
from tests.conftest import ROOT


@pytest.mark.slow
def test_the_demo_resumes_a_killed_import_and_reruns_a_failed_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env |= {"RUNNER_HOME": str(tmp_path / "home"), "DEMO_BIG_POSTS": "40000"}
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "demo")], env=env, cwd=ROOT, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
    finally:  # the demo leaves its embedded Redis running, as a deployment would
        EmbeddedRedis.for_home(tmp_path / "home").stop()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    crash = out[out.index("a crash:") : out.index("a failed run:")]
    # The killed attempt's lines, then the second attempt resuming from the checkpoint
    assert re.search(r"#1 \[upsert\] step.started", crash), crash
    assert "run.requeued reason=lease expired next_attempt=2" in crash
    resumed = re.search(r"#2 \[upsert\] import.resumed position=(\d+)", crash)
    assert resumed and int(resumed.group(1)) > 0, crash
    assert "attempts:   2," in crash and "state:      succeeded" in crash
    # And the failed run, rerun once its file is there
    failed = out[out.index("a failed run:") :]
    assert "the file is gone; restore it, then rerun" in failed
    assert "#2 run.rerun" in failed and "#2 run.succeeded" in failed
    # Not on a terminal, it ends by printing the console's command rather than starting it
    assert f"RUNNER_HOME={tmp_path / 'home'} .venv/bin/runner web" in out
