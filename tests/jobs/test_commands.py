"""`runner import` and `runner db init`, through Click's CliRunner with the site's tasks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from runner.config import Settings
from runner.runs.index import RunIndex, RunQuery
from scripts.gen_posts import generate_posts, write_feed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The site's own tasks (`jobs`)."""
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


def make_feed(path: Path, count: int, *, start: int = 0) -> Path:
    with path.open("w") as out:
        write_feed(generate_posts(count, seed=9, start=start), out)
    return path


def test_a_directory_is_one_run_per_feed_file(
    tmp_path: Path, invoke: Callable[..., Result], index: RunIndex
) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    make_feed(feeds / "a.jsonl", 3)
    make_feed(feeds / "b.jsonl", 3, start=10)
    (feeds / "notes.md").write_text("not a feed")
    (feeds / ".hidden.jsonl").write_text("{}")
    result = invoke("import", str(feeds), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and not any(line["deduplicated"] for line in lines)
    again = invoke("import", str(feeds / "a.jsonl"), "--json")
    assert json.loads(again.stdout)["deduplicated"] is True
    assert len(index.runs(RunQuery(task="import_posts"))) == 2


def test_missing_sources_are_usage_errors_and_queue_nothing(
    tmp_path: Path, invoke: Callable[..., Result], index: RunIndex
) -> None:
    good = make_feed(tmp_path / "good.jsonl", 2)
    missing = invoke("import", str(good), str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2
    assert missing.output.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file or directory"
    scheme = invoke("import", "ftp://example.org/feed.jsonl")
    assert scheme.exit_code == 2 and "only http:// and https://" in scheme.output
    token = invoke("import", str(good), str(good), "--token", "mine")
    assert token.exit_code == 2 and "--token needs exactly one" in token.output
    assert index.runs() == []


def test_db_init_is_idempotent(invoke: Callable[..., Result]) -> None:
    first, second = invoke("db", "init"), invoke("db", "init")
    assert first.exit_code == second.exit_code == 0
    assert first.output.startswith("schema at revision 0003 (head): sqlite:///")
    assert first.output.splitlines()[1].startswith("history at revision h0002: sqlite:///")
