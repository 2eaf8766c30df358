"""The README's mutation testing command, run on a copy of the tree (it mutates files in
place): it samples with its seed, runs each mutant against the module's tests, says what it
found per module, and leaves the module as it was."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_scripts_mutate_kills_sampled_mutants_and_restores_the_module(tmp_path: Path) -> None:
    # Given a copy of the tree (so the suite's own files are never mutated)
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("runner", "jobs", "tests", "scripts"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    original = (copy / "runner/record.py").read_text()
    skipping = copy / "tests/test_skipping.py"  # as PostgreSQL's tests do without their URL
    skipping.write_text("import pytest\n\ndef test_skipped() -> None:\n    pytest.skip('no')\n")
    # When two mutants of the run record are sampled with the README's seed and run
    done = subprocess.run(
        [sys.executable, "-m", "scripts.mutation", "runner/record.py", "--sample", "2",
         "--seed", "17", "--tests", "tests/runner/test_record.py", "tests/test_skipping.py"],
        cwd=copy, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "RUNNER_MUTATE_DIR": str(tmp_path / "results")},
    )  # fmt: skip
    # Then each was run and the module's summary says what came of them, seed included
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()  # the summary, then any survivor's change
    [summary] = [line for line in lines if line.startswith("runner/record.py: 2 run, killed ")]
    assert "seed 17" in summary
    # and it warned that a test skipped (what only it covers would show survivors)
    assert "warning: 1 of these tests skip" in done.stdout
    assert (copy / "runner/record.py").read_text() == original
    assert list((tmp_path / "results").iterdir())  # kept to continue later
