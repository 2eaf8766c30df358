"""The layering the developers' guide promises, read from the source: the public API's names,
jobs/ built on it alone, runner/ free of import circles and of jobs/."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import runner
import runner.cli

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "AttemptStopped", "ConfigError", "CronEntry", "Enqueued", "HealthCheck", "InvalidArguments",
    "LeaseLost", "Limit", "PermanentError", "RedisUnavailable", "Request", "RetryPolicy", "Run",
    "RunRecord", "RunState",
    "RunnerError", "Settings", "Task", "TaskError", "TaskRegistry", "TransientError",
    "UnknownRun", "canonical_json", "connect", "content_token", "derive_token", "prune_runs",
    "redact", "slot_token",
    "AsyncClient", "Client", "TaskHandle", "create_outbox_table", "drop_outbox_table",
    "outbox_table",
}  # fmt: skip
PUBLIC_CLI = {"App", "cli", "finish_waiting", "json_line", "main", "pass_app", "table"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imports(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names) of every import in the file, wherever it is (TYPE_CHECKING blocks and
    function bodies included); names is () for `import module`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, tuple(alias.name for alias in node.names)


def test_the_public_api_exports_exactly_its_names() -> None:
    assert set(runner.__all__) == PUBLIC
    assert set(runner.cli.__all__) == PUBLIC_CLI
    for package, names in ((runner, PUBLIC), (runner.cli, PUBLIC_CLI)):
        missing = [name for name in names if not hasattr(package, name)]
        assert not missing, f"{package.__name__} lists but lacks {missing}"


def test_jobs_import_only_the_public_api_of_the_runner() -> None:
    wrong = [
        f"{module_name(path)} imports {imported}"
        for path in modules("jobs").values()
        for imported, _ in imports(path)
        if imported.split(".")[0] == "runner"
        and imported not in ("runner", "runner.cli", "runner.web")
    ]
    assert not wrong, (
        "jobs/ may import only `runner`, `runner.cli` and `runner.web`:\n" + "\n".join(wrong)
    )


def test_the_readme_task_example_imports_only_the_public_api() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines()]
    found = [line for line in lines if line.startswith(("from runner", "import runner"))]
    assert found, "the README shows how a task module imports the runner"
    wrong = [line for line in found if line.split()[1] not in ("runner", "runner.cli")]
    assert not wrong, wrong


def test_the_engine_never_imports_jobs_nor_its_own_package_namespace() -> None:
    wrong = []
    for name, path in modules("runner").items():
        for imported, names in imports(path):
            if imported.split(".")[0] == "jobs":
                wrong.append(f"{name} imports {imported}")
            if imported == "runner" and name != "runner":
                wrong.append(f"{name}: `from runner import {', '.join(names)}` (import the module)")
    assert not wrong, "\n".join(wrong)


def _graph() -> dict[str, set[str]]:
    known = modules("runner")
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for imported, names in imports(path):
            targets = [f"{imported}.{n}" for n in names if f"{imported}.{n}" in known]
            graph[name].update(targets or ([imported] if imported in known else []))
        graph[name].discard(name)
    return graph


def test_no_import_circle_among_the_engine_modules() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            circle = visit(start)
            assert circle is None, "import circle: " + " -> ".join(circle)


# A string equal to a state or outcome that means something else: (module, value) -> what.
OTHER_MEANINGS = {("jobs.progress", "running"): "the state of an `imports` row, not of a run"}


def _enum_values() -> set[str]:
    from runner.attempt.execute import AttemptOutcome
    from runner.record import RunState

    return {str(v) for v in RunState} | {str(v) for v in AttemptOutcome}


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """String constants outside StrEnum class bodies (where the values are defined) and
    outside f-strings (whose pieces are text, like a key's name, not values)."""
    tree = ast.parse(path.read_text(), str(path))
    defining = {
        id(node)
        for parent in ast.walk(tree)
        if isinstance(parent, ast.JoinedStr)
        or (
            isinstance(parent, ast.ClassDef)
            and any(isinstance(b, ast.Name) and b.id == "StrEnum" for b in parent.bases)
        )
        for node in ast.walk(parent)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in defining:
                continue
            yield node.lineno, node.value


def test_no_run_state_or_attempt_outcome_is_spelled_outside_its_enum() -> None:
    # The Lua scripts are whole strings: they never equal a state, so they are free to spell them.
    values = _enum_values()
    wrong = [
        f"{name}:{line}: {value!r}"
        for package in ("runner", "jobs")
        for name, path in modules(package).items()
        for line, value in _literals(path)
        if value in values and (name, value) not in OTHER_MEANINGS
    ]
    assert not wrong, "use RunState / AttemptOutcome:\n" + "\n".join(wrong)


def _defined(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_engine_modules_import_each_name_from_the_module_that_defines_it() -> None:
    # The API packages (runner, runner.cli, runner.web) re-export on purpose; nothing else does.
    known = modules("runner")
    api = {"runner", "runner.cli", "runner.web"}
    wrong = [
        f"{name} imports {imported}.{n}"
        for name, path in known.items()
        for imported, names in imports(path)
        if imported in known and imported not in api
        for n in names
        if n not in _defined(known[imported]) and f"{imported}.{n}" not in known
    ]
    assert not wrong, "\n".join(wrong)


# The engine's layers, lowest first (../shared/DESIGN.md, "Decisions", 7): a module may import
# its own unit and units of a lower rank only. The shared modules at runner/ are units of their
# own; the entry points (the API package, `python -m runner`, the alias old jobs name) are above
# every layer. Subsystems of one rank (delivery, client, cron) are independent of each other.
RANK = {
    "runner.errors": 0.0, "runner.printable": 0.0, "runner.record": 0.0, "runner.keys": 0.05,
    "runner.config": 0.1, "runner.tokens": 0.1, "runner.handles": 0.2, "runner.tasks": 0.3,
    "runner.connections": 1, "runner.logs": 1.5, "runner.runs": 2,
    "runner.delivery": 3, "runner.client": 3, "runner.cron": 3,
    "runner.attempt": 4, "runner.worker": 5, "runner.monitoring": 6, "runner.web": 7,
    "runner.cli": 8,
}  # fmt: skip
ENTRY_POINTS = {"runner", "runner.__main__", "runner.execute"}
SUBSYSTEMS = {
    "connections", "runs", "delivery", "client", "attempt", "worker", "monitoring", "cron",
    "cli", "web",
}  # fmt: skip


def unit(module: str) -> str:
    """The shared module or subsystem package a module belongs to."""
    return ".".join(module.split(".")[:2])


def test_each_layer_imports_only_the_layers_below_it() -> None:
    known = modules("runner")
    units = {unit(name) for name in known} - ENTRY_POINTS
    assert units == set(RANK), (
        f"a unit without a rank, or a rank without a unit: {units ^ set(RANK)}"
    )
    wrong = [
        f"{name} ({RANK[unit(name)]}) imports {imported} ({RANK[unit(imported)]})"
        for name, path in known.items() if name not in ENTRY_POINTS
        for imported, _ in imports(path)
        if imported.startswith("runner.") and unit(imported) != unit(name)
        and (unit(imported) in ENTRY_POINTS or RANK[unit(imported)] >= RANK[unit(name)])
    ]  # fmt: skip
    assert not wrong, "an import upward or sideways (TYPE_CHECKING included):\n" + "\n".join(wrong)


def test_the_engine_is_a_few_shared_modules_and_its_subsystems() -> None:
    top = sorted(p.name for p in (ROOT / "runner").glob("*.py"))
    assert len(top) <= 12, top
    packages = {p.parent.name for p in (ROOT / "runner").glob("*/__init__.py")}
    assert packages == SUBSYSTEMS


def test_each_subsystem_says_what_it_owns_and_what_it_may_import() -> None:
    for package in sorted(SUBSYSTEMS - {"cli", "web"}):
        doc = ast.get_docstring(ast.parse((ROOT / "runner" / package / "__init__.py").read_text()))
        assert doc and "Owns:" in doc and "May import:" in doc, package
        owned = {p.stem for p in (ROOT / "runner" / package).glob("*.py")} - {"__init__"}
        named = set(doc.split("Owns:")[1].split("May import:")[0].replace(",", " ").split())
        missing = [m for m in owned if not {m, f"runner.{package}.{m}", f"{m}."} & named]
        assert not missing, f"runner/{package}/__init__.py does not say it owns {missing}"


# Engine modules whose behaviour is tested through another module's tests, each with why.
NO_TEST_FILE = {
    "runner.__main__": "`python -m runner` is the CLI's `main` (test_readme runs it)",
}


def test_every_engine_module_has_its_test_file() -> None:
    """runner/<pkg>/<module>.py is tested in tests/runner/<pkg>/test_<module>.py (the CLI and
    the console, above the engine, have their own test layout; migrations are data; a package's
    __init__ only documents or re-exports, and the public API's is tested above)."""
    missing = []
    for name, path in modules("runner").items():
        parts = name.split(".")[1:]
        if path.name == "__init__.py" or "migrations" in parts or name in NO_TEST_FILE:
            continue
        if parts[0] in ("cli", "web"):
            continue
        test = ROOT / "tests" / "runner" / Path(*parts[:-1]) / f"test_{parts[-1]}.py"
        if not test.exists():
            missing.append(f"{name}: {test.relative_to(ROOT)}")
    assert not missing, "engine modules without their test file:\n" + "\n".join(missing)
