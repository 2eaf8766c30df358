"""`scripts/test_loaded` (run by .ci/run): the tests that measure time or rates, again beside
two CPU hogs that are gone afterwards; and those tests carry the `load_sensitive` marker."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_pass_runs_the_marked_tests_beside_two_hogs_and_kills_them() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "test_loaded"), "--collect-only", "-q"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    found = re.search(r"beside two CPU hogs \(pids (\d+) (\d+)\)", done.stdout)
    assert found, done.stdout[:500]
    for pid in map(int, found.groups()):
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"hog {pid} still runs"
    collected = [line for line in done.stdout.splitlines() if "::test_" in line]
    assert any("test_trends.py::test_a_deploy_that_changed_nothing" in x for x in collected)
    assert "./scripts/test_loaded" in (ROOT / ".ci" / "run").read_text()


def test_every_test_asserting_on_the_clock_is_marked_load_sensitive() -> None:
    unmarked = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            timed = any(
                isinstance(a, ast.Assert) and "monotonic()" in ast.unparse(a.test)
                for a in ast.walk(node)
            )
            marked = any("load_sensitive" in ast.unparse(d) for d in node.decorator_list)
            if timed and not marked:
                unmarked.append(f"{path.relative_to(ROOT)}::{node.name}")
    assert unmarked == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
