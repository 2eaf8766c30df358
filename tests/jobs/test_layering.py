"""jobs/ layering: database.py is the lowest module, and each name is imported from its home."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def _tree(module: str) -> ast.Module:
    return ast.parse((JOBS / f"{module}.py").read_text())


def _defined(module: str) -> set[str]:
    """Names a module defines itself: functions, classes and assigned names at the top."""
    names: set[str] = set()
    for node in _tree(module).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_jobs_name_is_imported_from_the_module_that_defines_it() -> None:
    # Given every `from jobs.X import name` in jobs/
    wrong = []
    for path in sorted(JOBS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobs."):
                home = node.module.removeprefix("jobs.")  # type: ignore[union-attr]
                defined = _defined(home)
                wrong += [
                    f"{path.name}: {home}.{a.name}" for a in node.names if a.name not in defined
                ]
    # Then each name is defined where it is imported from (no re-exports)
    assert wrong == []


def test_the_database_module_imports_no_other_jobs_module() -> None:
    imported = [
        node.module
        for node in ast.walk(_tree("database"))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobs")
    ]
    assert imported == []
    assert {"metadata", "reading", "retry_on_conflict", "SQLITE_BEGIN"} <= _defined("database")


def test_a_worker_and_the_command_line_start_without_the_store() -> None:
    # Given a fresh interpreter
    # When it loads what `runner worker` and `runner import` load before any task runs
    code = (
        "import sys\n"
        "from runner.cli.commands import cli\n"
        "from runner.tasks import load_registry\n"
        "import runner.worker.supervisor\n"
        "registry = load_registry('jobs')\n"
        "registry.get('import_posts').check_args({'source': 'feed.jsonl'})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic',"
        " 'psycopg', 'fastapi', 'uvicorn', 'jinja2'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=JOBS.parent)  # fmt: skip
    # Then neither SQLAlchemy, the database drivers nor the console were imported
    assert done.stdout.strip() == "[]"
