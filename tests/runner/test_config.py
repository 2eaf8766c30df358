"""Settings from the environment, and the errors that name the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import Settings
from runner.errors import ConfigError


def test_defaults_follow_the_design() -> None:
    settings = Settings.from_env({})
    assert settings.queues == ("imports", "cron", "default")
    assert settings.lease_seconds == 30 and settings.max_attempts == 5
    assert settings.retention_seconds == 14 * 86_400 and settings.prefix == "runner:"
    assert settings.home == Path("var").absolute()
    assert settings.store_url == f"sqlite:///{Path('var').absolute() / 'content.db'}"
    assert settings.redis_url is None


def test_variables_override_defaults() -> None:
    settings = Settings.from_env(
        {
            "RUNNER_HOME": "/srv/site/var",
            "RUNNER_QUEUES": " imports , default ",
            "RUNNER_LEASE_SECONDS": "5",
            "RUNNER_DATABASE_URL": "postgresql+psycopg://u:p@db/site",
            "RUNNER_RETENTION_DAYS": "1",
        }
    )
    assert settings.home == Path("/srv/site/var") and settings.queues == ("imports", "default")
    assert settings.lease_seconds == 5.0 and settings.reaper_interval == 1.25
    assert settings.store_url == "postgresql+psycopg://u:p@db/site"
    assert settings.retention_seconds == 86_400


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RUNNER_LEASE_SECONDS", "soon", "RUNNER_LEASE_SECONDS='soon' is not a number"),
        ("RUNNER_LEASE_SECONDS", "0.1", "RUNNER_LEASE_SECONDS='0.1' is too small"),
        ("RUNNER_MAX_ATTEMPTS", "0", "RUNNER_MAX_ATTEMPTS='0' is too small"),
        ("RUNNER_FEEDS", "https://a.example/f.jsonl ftp://b", "RUNNER_FEEDS: 'ftp://b' is not an"),
        ("RUNNER_DOWNLOAD_DEADLINE_SECONDS", "0", "RUNNER_DOWNLOAD_DEADLINE_SECONDS='0' is too"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})


def test_the_feeds_are_a_list_of_urls_and_the_deadline_a_number_of_seconds() -> None:
    settings = Settings.from_env(
        {"RUNNER_FEEDS": "https://a.example/f.jsonl, http://b.example/g.json",
         "RUNNER_DOWNLOAD_DEADLINE_SECONDS": "60"}
    )  # fmt: skip
    assert settings.feeds == ("https://a.example/f.jsonl", "http://b.example/g.json")
    assert settings.download_deadline_seconds == 60
    assert (Settings().feeds, Settings().download_deadline_seconds) == ((), 300)


def test_cli_options_fall_back_to_the_environment() -> None:
    settings = Settings.from_env({"RUNNER_LEASE_SECONDS": "9"})
    changed = settings.with_changes(lease_seconds=None, queues=("cron",))
    assert changed.lease_seconds == 9 and changed.queues == ("cron",)


def test_the_inbox_and_the_code_version_come_from_the_environment_too() -> None:
    # runner/config.py is the only reader of os.environ: these two were read elsewhere before
    settings = Settings.from_env({"RUNNER_INBOX": "/srv/in", "RUNNER_CODE_VERSION": "abc123"})
    assert settings.inbox == Path("/srv/in") and settings.code_version == "abc123"
    assert Settings.from_env({}).inbox is None and Settings.from_env({}).code_version is None


def test_sentinel_urls_wait_for_one_replica_unless_told_otherwise() -> None:
    sentinel = {"RUNNER_REDIS_URL": "redis+sentinel://s1,s2,s3/site/0"}
    assert Settings.from_env(sentinel).min_replicas == 1
    assert Settings.from_env({"RUNNER_REDIS_URL": "redis://cache/0"}).min_replicas == 0
    assert Settings.from_env({}).min_replicas == 0
    assert Settings.from_env({**sentinel, "RUNNER_REDIS_MIN_REPLICAS": "0"}).min_replicas == 0
    assert Settings.from_env({"RUNNER_REDIS_MIN_REPLICAS": "2"}).min_replicas == 2


def test_a_malformed_replica_count_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="RUNNER_REDIS_MIN_REPLICAS"):
        Settings.from_env({"RUNNER_REDIS_MIN_REPLICAS": "one"})


def test_the_stop_time_is_read_and_checked() -> None:
    assert Settings.from_env({}).stop_seconds == 10.0
    assert Settings.from_env({"RUNNER_STOP_SECONDS": "25"}).stop_seconds == 25.0
    with pytest.raises(ConfigError, match=r"RUNNER_STOP_SECONDS=.* is too small"):
        Settings.from_env({"RUNNER_STOP_SECONDS": "0.1"})
