"""Redis URLs, redaction, and the embedded server shared by local processes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from runner.config import Settings
from runner.connections.redis import EmbeddedRedis, connect, redact, redis_url
from runner.errors import ConfigError, RedisUnavailable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "rediss://app:hunter2@cache.example.org:6380/1",
            "rediss://app:***@cache.example.org:6380/1",
        ),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_non_redis_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        redis_url(Settings(redis_url="http://user:hunter2@cache/"))
    assert "hunter2" not in str(caught.value) and "RUNNER_REDIS_URL" in str(caught.value)


def test_unreachable_redis_is_one_line_without_the_password() -> None:
    with pytest.raises(RedisUnavailable) as caught:
        connect(Settings(redis_url="redis://:hunter2@127.0.0.1:1/0"))
    message = str(caught.value)
    assert "hunter2" not in message and "redis://:***@127.0.0.1:1/0" in message
    assert "\n" not in message


def test_the_embedded_server_starts_once_persists_and_stops() -> None:
    # Given a home with no server yet (a deep path, as pytest's tmp dirs are)
    base = Path(tempfile.mkdtemp(prefix="rt-home-", dir="/tmp"))
    home = base / ("deep" * 30)
    settings = Settings(home=home)
    server = EmbeddedRedis.for_home(home)
    try:
        # When two clients ask for it, the first starts it and the second reuses it
        first = connect(settings)
        first.set("kept", "yes")
        assert redis_url(settings) == server.url and len(str(server.socket)) <= 100
        # Then after a clean stop and a new start, the data is still there (AOF)
        assert server.stop()
        assert not server.is_running()
        assert connect(settings).get("kept") == b"yes"
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
