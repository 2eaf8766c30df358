"""Mutation testing of one module or folder against the tests that cover it (scripts/mutate).

Each mutant is written into the module's file in place, the module's tests run as a separate
`pytest -x` process (so `runner worker` subprocesses and CLI subprocesses run the mutant too),
and the original is put back. Python mutants are cosmic-ray's operators; the Lua scripts inside
Python strings get ours (scripts/lua_mutants.py). Which tests cover which module, and the
mutants judged equivalent, are in scripts/mutate.toml. A sample is drawn with a seed; results
go to $RUNNER_MUTATE_DIR (default ~/.cache/runner-mutate), one JSON line per mutant keyed by the
mutated text, so a later run with the same seed continues where this one stopped.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cosmic_ray.plugins
from cosmic_ray.ast import ast_nodes, get_ast
from cosmic_ray.mutating import mutate_code

from scripts import lua_mutants

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "scripts" / "mutate.toml"
OUTCOMES = ("killed", "survived", "timeout", "equivalent")
NEVER_RAISED = 'type("NeverRaised", (Exception,), {})'


@dataclass(frozen=True)
class Mutant:
    """One change to a module: its name, the line it changes (before and after), the text."""

    id: str
    line: int
    original: str
    mutated: str
    source: str

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def results_dir() -> Path:
    default = Path.home() / ".cache" / "runner-mutate"
    return Path(os.environ.get("RUNNER_MUTATE_DIR", default))


def python_mutants(source: str) -> Iterator[Mutant]:
    """cosmic-ray's mutants of `source` (the operators that take no arguments), leaving out
    the ones inside annotations (strings at run time under `from __future__ import annotations`)."""
    annotations = _annotation_spans(source)
    module = get_ast(source)
    lines = source.splitlines(keepends=True)
    for name in cosmic_ray.plugins.operator_names():
        operator_class = cosmic_ray.plugins.get_operator(name)
        if operator_class.arguments():
            continue
        operator = operator_class()
        positions = [
            start for node in ast_nodes(module) for start, _end in operator.mutation_positions(node)
        ]
        for occurrence, start in enumerate(positions):
            if any(first <= start < last for first, last in annotations):
                continue
            try:
                mutated = mutate_code(source, operator, occurrence)
            except AttributeError:  # cosmic-ray cannot apply it to this node
                continue
            if mutated is None or mutated == source:
                continue
            # an `except` clause that never matches, without importing cosmic-ray
            mutated = mutated.replace("CosmicRayTestingException", NEVER_RAISED)
            changed = mutated.splitlines(keepends=True)
            number = start[0]
            yield Mutant(
                f"{name}:{occurrence}",
                number,
                lines[number - 1],
                changed[number - 1] if number <= len(changed) else "",
                mutated,
            )


def _annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        found: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            found = [node.annotation]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found = [node.returns]
        elif isinstance(node, ast.AnnAssign):
            found = [node.annotation]
        for a in found:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.append(((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)))
    return spans


def all_mutants(path: Path) -> list[Mutant]:
    source = path.read_text()
    found = list(python_mutants(source))
    found += [
        Mutant(m.id, m.line, m.original, m.mutated, m.source) for m in lua_mutants.mutants(source)
    ]
    return sorted(found, key=lambda m: (m.line, m.id))


class InPlace:
    """Writes a mutant into its file and always puts the original back (even after a kill of
    this process: the original is saved beside the results first, and restored on start)."""

    def __init__(self, state: Path, path: Path) -> None:
        # one record per file of each tree: two copies of the tree mutating the same module
        # must never restore each other's file
        name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        self.saved = state / f"in-flight-{name}.json"
        state.mkdir(parents=True, exist_ok=True)
        self.restore()

    def restore(self) -> None:
        if self.saved.exists():
            was = json.loads(self.saved.read_text())
            path = Path(was["path"])
            path.write_text(was["text"])
            os.utime(path, ns=(was["mtime_ns"], was["mtime_ns"]))  # its .pyc stays valid
            self.saved.unlink()

    def write(self, path: Path, text: str) -> None:
        stat = path.stat()
        record = {"path": str(path), "text": path.read_text(), "mtime_ns": stat.st_mtime_ns}
        self.saved.write_text(json.dumps(record))
        path.write_text(text)


def run_tests(tests: list[str], timeout: float) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout', seconds, the output's tail) of one `pytest -x` run."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no .pyc of a mutant left behind
    started = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its worker subprocesses too
            proc.communicate()
            return "timeout", time.monotonic() - started, ""
    outcome = "passed" if proc.returncode == 0 else "failed"
    return outcome, time.monotonic() - started, out.decode(errors="replace")[-2000:]


SKIPPED = re.compile(r"(\d+) skipped")  # in pytest's summary line


def claimed(mutant: Mutant) -> bool:
    """Claims `mutant` for this process, unless a live process has: copies of the tree (each
    its own checkout, one RUNNER_MUTATE_DIR) can share a module's sample."""
    claim = results_dir() / "claims" / mutant.key
    claim.parent.mkdir(parents=True, exist_ok=True)
    try:
        other = int(claim.read_text() or 0)
        os.kill(other, 0)
        return other == os.getpid()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        claim.write_text(str(os.getpid()))
        return True


def _failed_test(output: str) -> str:
    """The first test pytest reports as failed or in error, from the output's tail."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split()[1]
    return ""


def load_results(file: Path) -> dict[str, dict[str, object]]:
    if not file.exists():
        return {}
    rows = (json.loads(line) for line in file.read_text().splitlines() if line.strip())
    return {str(row["key"]): row for row in rows}


def tests_digest(tests: list[str]) -> str:
    """What the module's test files say, hashed: a survivor is run again once they change."""
    h = hashlib.sha256()
    for test in sorted(tests):
        path = ROOT / test
        h.update(path.read_bytes() if path.is_file() else test.encode())
    return h.hexdigest()[:16]


def settled(rows: dict[str, dict[str, object]], digest: str) -> dict[str, dict[str, object]]:
    """The saved results that stand: every kill, and the survivors of these same tests (a
    survivor of tests that changed since may be killed now, so it is run again)."""
    return {k: r for k, r in rows.items()
            if r["outcome"] != "survived" or r.get("tests_digest") == digest}  # fmt: skip


def equivalent_reason(config: dict[str, object], module: str, mutant: dict[str, object]) -> str:
    for entry in config.get("equivalent", []):  # type: ignore[attr-defined]
        if (
            entry["module"] == module
            and entry["original"].strip() == str(mutant["original"]).strip()
            and entry["mutated"].strip() in ("*", str(mutant["mutated"]).strip())
        ):
            return str(entry["reason"])
    return ""


def mutate_module(module: str, tests: list[str], args: argparse.Namespace, config: dict) -> None:
    path = ROOT / module
    found = [m for m in all_mutants(path) if args.kind in ("all", m.id.split("/")[0])]
    sample = random.Random(args.seed).sample(found, min(args.sample, len(found)))
    sample.sort(key=lambda m: (m.line, m.id))
    file = results_dir() / (module.replace("/", "__") + ".jsonl")
    digest = tests_digest(tests)
    done = settled(load_results(file), digest)
    todo = [m for m in sample if m.key not in done]
    if args.only:  # run these again, sampled or not (after adding a test that should kill them)
        sample = [m for m in found if m.id in args.only]
        todo = sample
    print(
        f"{module}: {len(found)} mutants, {len(sample)} sampled (seed {args.seed}), "
        f"{len(todo)} to run; tests: {' '.join(tests)}",
        flush=True,
    )
    if todo and not args.report:
        outcome, baseline, tail = run_tests(tests, args.timeout or 1800)
        if outcome != "passed":
            sys.exit(f"mutate: {module}'s tests fail without a mutant; fix them first:\n{tail}")
        timeout = args.timeout or max(60.0, 3 * baseline)
        print(f"  tests pass unmutated in {baseline:.0f} s; timeout {timeout:.0f} s", flush=True)
        if skipped := SKIPPED.search(tail):
            print(
                f"  warning: {skipped[1]} of these tests skip (PostgreSQL's without "
                "RUNNER_TEST_POSTGRES_URL, the browser's without Chromium): the code only "
                "they cover will show survivors",
                flush=True,
            )
        in_place = InPlace(results_dir(), path)
        for n, mutant in enumerate(todo, 1):
            if not args.only and (
                mutant.key in settled(load_results(file), digest) or not claimed(mutant)
            ):
                continue  # another copy of the tree, sharing the results, has it
            try:
                in_place.write(path, mutant.source)
                outcome, seconds, tail = run_tests(tests, timeout)
            finally:
                in_place.restore()
            row = {
                "key": mutant.key,
                "id": mutant.id,
                "line": mutant.line,
                "seed": args.seed,
                "original": mutant.original,
                "mutated": mutant.mutated,
                "outcome": {"failed": "killed", "passed": "survived"}.get(outcome, outcome),
                "seconds": round(seconds, 1),
                "tests": tests,
                "tests_digest": digest,
                "by": _failed_test(tail),
            }
            with file.open("a") as out:
                out.write(json.dumps(row) + "\n")
            done[mutant.key] = row
            print(
                f"  [{n}/{len(todo)}] {row['outcome']:8} {mutant.id} line {mutant.line}"
                f" ({seconds:.0f} s)",
                flush=True,
            )
    summarize(module, [done[m.key] for m in sample if m.key in done], args.seed, config)


def summarize(module: str, rows: list[dict[str, object]], seed: int, config: dict) -> None:
    counts = dict.fromkeys(OUTCOMES, 0)
    survivors = []
    for row in rows:
        outcome = str(row["outcome"])
        if outcome == "survived" and (reason := equivalent_reason(config, module, row)):
            outcome = "equivalent"
            row = {**row, "reason": reason}
        counts[outcome] += 1
        if outcome == "survived":
            survivors.append(row)
    real = len(rows) - counts["equivalent"]
    ratio = f"{100 * (counts['killed'] + counts['timeout']) / real:.0f}%" if real else "-"
    print(
        f"{module}: {len(rows)} run, killed {counts['killed']}, survived {counts['survived']}, "
        f"timeout {counts['timeout']}, equivalent {counts['equivalent']}; "
        f"{ratio} of non-equivalent killed (timeouts count as killed); seed {seed}"
    )
    for row in survivors:
        print(
            f"  survived {row['id']} line {row['line']}:\n"
            f"    - {str(row['original']).strip()}\n    + {str(row['mutated']).strip()}"
        )


def modules(target: str | None, mapping: dict[str, list[str]]) -> list[str]:
    if target is None:
        return list(mapping)
    target = str(Path(target).resolve().relative_to(ROOT)) if Path(target).exists() else target
    chosen = [m for m in mapping if m == target or m.startswith(target.rstrip("/") + "/")]
    if not chosen:
        sys.exit(
            f"mutate: no module under {target!r} in scripts/mutate.toml [tests]; add it "
            "there with the test files that cover it"
        )
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", help="a module or folder (default: every module)")
    parser.add_argument("--sample", type=int, default=60, help="mutants per module (60)")
    parser.add_argument("--seed", type=int, default=17, help="the sample's seed (17)")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (3x the clean run)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run just these mutants")
    parser.add_argument(
        "--kind",
        choices=("all", "core", "lua"),
        default="all",
        help="cosmic-ray's mutants (core), ours of the Lua scripts (lua), or both",
    )
    parser.add_argument("--tests", nargs="+", metavar="FILE", help="run these tests instead")
    parser.add_argument("--report", action="store_true", help="only summarize saved results")
    args = parser.parse_args()
    config = tomllib.loads(CONFIG.read_text())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("mutate: stopped"))  # restores the file
    for module in modules(args.path, config["tests"]):
        mutate_module(module, args.tests or config["tests"][module], args, config)


if __name__ == "__main__":
    main()
