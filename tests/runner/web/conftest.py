"""Fixtures for the console: the app on this test's real Redis, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from runner.config import Settings
from runner.web import create_app

BASE = "http://127.0.0.1:8080"


@pytest.fixture
def client_for(redis: Redis, settings: Settings) -> Callable[..., TestClient]:
    """A TestClient for the console with some settings changed (token, read-only, ...)."""

    def make(**changes: Any) -> TestClient:
        app = create_app(replace(settings, **changes), redis=redis)
        return TestClient(app, base_url=BASE, follow_redirects=False)

    return make


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()
