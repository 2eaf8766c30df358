"""`runner rejects RUN`: an import's rejected lines, through the CLI, and `show` pointing at it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from runner.config import Settings
from scripts.gen_posts import generate_posts, write_feed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(tasks_module="jobs", queues=("imports", "cron", "default"))


def feed_with_bad_lines(path: Path) -> Path:
    """Two good posts, then three bad lines (positions 3, 4, 5), then a good one."""
    posts = list(generate_posts(3, seed=4))
    with path.open("w") as out:
        write_feed(posts[:2], out)
        out.write('{"source_id": "bad-1", "body": "no title"}\n')
        out.write("this is not json\n")
        out.write('{"source_id": "bad-3", "title": "", "body": "empty title"}\n')
        write_feed(posts[2:], out)
    return path


def test_rejects_lists_position_source_id_and_reason_paged(
    tmp_path: Path, invoke: Callable[..., Result], work: Callable[[], None]
) -> None:
    # Given an import of a feed with three bad lines, done
    feed = feed_with_bad_lines(tmp_path / "feed.jsonl")
    token = invoke("import", str(feed)).stdout.strip()
    work()
    # When its rejects are listed as JSON
    listed = invoke("rejects", token[:12], "--json")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    # Then each has its position, source id and reason, in order
    assert [r["position"] for r in rows] == [3, 4, 5]
    assert rows[0]["source_id"] == "bad-1" and "title" in rows[0]["reason"]
    assert rows[1]["source_id"] is None and rows[1]["reason"]
    assert set(rows[0]) >= {"token", "source", "position", "source_id", "reason", "created_at"}
    # And a page of two says how to get the next one
    page = invoke("rejects", token, "--limit", "2")
    assert page.exit_code == 0
    lines = page.stdout.splitlines()
    assert lines[0].split() == ["POSITION", "SOURCE", "ID", "REASON"]
    assert any("bad-1" in line for line in lines) and not any("bad-3" in line for line in lines)
    assert f"runner rejects {token} --after 4" in page.stderr
    rest = invoke("rejects", token, "--after", "4", "--json")
    assert [json.loads(line)["position"] for line in rest.stdout.splitlines()] == [5]
    # And `show` says how many were rejected and the command that lists them
    shown = invoke("show", token)
    assert f"3 lines rejected: runner rejects {token}" in shown.stdout


def test_rejects_of_an_unknown_run_is_a_usage_error(invoke: Callable[..., Result]) -> None:
    result = invoke("rejects", "nosuchrun")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_rejects_of_an_import_that_moved_to_history_by_a_prefix(
    tmp_path: Path, invoke: Callable[..., Result], work: Callable[[], None], settings: Settings,
) -> None:  # fmt: skip
    from runner.connections.redis import connect
    from runner.runs.move import Mover

    # Given an import with three rejected lines, done, then moved out of Redis
    feed = feed_with_bad_lines(tmp_path / "feed.jsonl")
    token = invoke("import", str(feed)).stdout.strip()
    work()
    assert Mover(connect(settings), settings.with_changes(history_delay_seconds=0.0)).move_once()
    # When its rejects are listed by a prefix of its token
    listed = invoke("rejects", token[:12], "--json")
    # Then history resolves the prefix, and the rejects come from the content store
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["position"] for line in listed.stdout.splitlines()] == [3, 4, 5]
