"""The console while Redis is down: an incident page on every page that needs Redis, never a
500, and the guard still checks a token without Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from runner.config import Settings
from runner.runs.enqueue import Enqueued
from runner.web.sessions import Sessions
from tests.conftest import RedisServer

TOKEN = "s3cret-console-token-for-tests-0123456789ABCDEF"

PAGES = ["/", "/runs", "/runs?state=failed", "/cron", "/runs/some-token", "/runs/some-token/events"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_an_incident_page_while_redis_is_down(
    path: str, client_for: Callable[..., TestClient], redis_server: RedisServer,
    enqueue: Callable[..., Enqueued],
) -> None:  # fmt: skip
    # Given a console (of a site with a schedule) whose Redis was up, and then stopped
    client = client_for(tasks_module="tests.cron_tasks")
    enqueue("noop", token="some-token")
    assert client.get("/runs").status_code == 200
    redis_server.stop()

    page = client.get(path)

    # Then the page says what is down, the up answer and what still works: no bare 500
    assert page.status_code == 503, page.text[:300]
    assert "Redis is unreachable" in page.text and "up FAIL redis unreachable" in page.text
    assert "What still works" in page.text and 'href="/health"' in page.text
    assert client.get("/health").status_code == 503  # the probe still answers


def test_a_token_is_checked_without_redis(
    client_for: Callable[..., TestClient], redis_server: RedisServer, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    # Given a console with a token, a session signed in before Redis went down
    client = client_for(web_token=TOKEN)
    sessions = Sessions(redis, replace(settings, web_token=TOKEN))
    cookie = sessions.value(sessions.start())
    redis_server.stop()

    # Then without the token it is the sign-in page; with it, or its cookie, the incident page
    assert client.get("/runs").status_code == 401
    bearer = client.get("/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 503 and "Redis is unreachable" in bearer.text
    client.cookies.set("runner_console", cookie)
    assert client.get("/").status_code == 503


def test_a_moved_runs_page_is_read_from_history_while_redis_is_down(
    client_for: Callable[..., TestClient], redis_server: RedisServer, redis: Redis,
    settings: Settings, enqueue: Callable[..., Enqueued], drain: Callable[..., None],
) -> None:  # fmt: skip
    from runner.runs.move import Mover

    moving = replace(settings, history_delay_seconds=0.0)
    token = enqueue("greet", name="ada").token
    drain()
    assert Mover(redis, moving).move_once() == 1
    client = client_for(history_delay_seconds=0.0)
    redis_server.stop()

    page = client.get(f"/runs/{token}")

    assert page.status_code == 200, page.text[:300]
    assert "succeeded" in page.text and "run.succeeded" in page.text
    assert client.get("/runs/not-moved").status_code == 503  # Redis is needed for the rest


def test_an_unreachable_history_database_is_named_on_a_503_page(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(history_url="postgresql+psycopg://u:secret-pw@127.0.0.1:1/h")

    page = client.get("/runs/a-run-not-in-redis")

    assert page.status_code == 503
    assert "history database is unreachable" in page.text and "cannot be read" in page.text
    assert "secret-pw" not in page.text
