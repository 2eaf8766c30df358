"""Sentinel URLs (parsing, redaction, errors) and a real failover seen through `connect`."""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool
from rq.serializers import JSONSerializer

from runner.cli.commands import cli
from runner.config import Settings
from runner.connections.redis import Durable, connect, redact, redis_url
from runner.connections.sentinel import (
    ClosingSentinelConnection,
    SentinelURL,
    master_client,
    parse_sentinel_url,
)
from runner.errors import ConfigError, RedisUnavailable
from runner.keys import Keys
from runner.runs.transitions import Runs
from runner.worker.horse import Horse
from tests.conftest import TEST_TASKS as TASKS
from tests.sentinels import sentinel_topology


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26380,s3/site/2",
            SentinelURL((("s1", 26379), ("s2", 26380), ("s3", 26379)), "site", 2, None, "hunter2"),
        ),
        (
            "redis+sentinel://app:p%40ss@[::1]:5000,10.0.0.2/mymaster",
            SentinelURL((("::1", 5000), ("10.0.0.2", 26379)), "mymaster", 0, "app", "p@ss"),
        ),
        ("redis+sentinel://s1/site/", SentinelURL((("s1", 26379),), "site")),
        ("redis+sentinel://s1:1,s2:65535/site", SentinelURL((("s1", 1), ("s2", 65535)), "site")),
    ],
)
def test_a_sentinel_url_names_every_host_the_service_and_the_db(
    url: str, parsed: SentinelURL
) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://:hunter2@s1:26379", "service name"),
        ("redis+sentinel://:hunter2@s1:26379,/site", "host is empty"),
        ("redis+sentinel://:hunter2@s1:port/site", "not a port"),
        ("redis+sentinel://:hunter2@s1:99999/site", "not a port"),
        ("redis+sentinel://:hunter2@s1:65536/site", "not a port"),
        ("redis+sentinel://:hunter2@s1:0/site", "not a port"),
        ("redis+sentinel://:hunter2@s1//2", "service name"),
        ("redis+sentinel://:hunter2@s1/site/zero", "not a number"),
        ("redis+sentinel://:hunter2@s1/site/0?ssl=true", "query"),
        ("redis+sentinel://:hunter2@s1/site/0/extra", "service name"),
    ],
)
def test_a_malformed_sentinel_url_says_why_without_the_password(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        redis_url(Settings(redis_url=url))
    message = str(caught.value)
    assert why in message and "RUNNER_REDIS_URL" in message and "redis+sentinel://" in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26380/site/1",
            "redis+sentinel://:***@s1:26379,s2:26380/site/1",
        ),
        ("redis+sentinel://app:hunter2@[::1]/site", "redis+sentinel://app:***@[::1]:26379/site/0"),
        ("redis+sentinel://s1,s2/site", "redis+sentinel://s1:26379,s2:26379/site/0"),
        ("redis+sentinel://:hunter2@s1:bad/site", "redis+sentinel://***"),
    ],
)
def test_sentinel_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_sentinel_password_stays_out_of_the_settings_repr() -> None:
    settings = Settings.from_env({"RUNNER_REDIS_SENTINEL_PASSWORD": "hunter2"})
    assert settings.redis_sentinel_password == "hunter2" and "hunter2" not in repr(settings)


def test_no_sentinel_reachable_is_one_line_without_the_password() -> None:
    url = "redis+sentinel://:hunter2@127.0.0.1:1,127.0.0.1:2/site/0"
    with pytest.raises(RedisUnavailable) as caught:
        connect(Settings(redis_url=url))
    message = str(caught.value)
    assert "hunter2" not in message and "127.0.0.1:1,127.0.0.1:2/site" in message
    assert "\n" not in message


def closing_listener() -> tuple[int, list[int]]:
    """A port that accepts connections and closes them at once, and how many it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = [0]

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            accepted[0] += 1
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], accepted


def test_each_sentinel_is_asked_once_per_question_then_the_next_one() -> None:
    # Given two sentinels that hang up on every connection
    (first, asked_first), (second, asked_second) = closing_listener(), closing_listener()
    url = parse_sentinel_url(f"redis+sentinel://127.0.0.1:{first},127.0.0.1:{second}/site")
    client = master_client(url, sentinel_password=None, socket_connect_timeout=5)
    # When a command needs the master
    with pytest.raises(MasterNotFoundError):
        client.ping()
    # Then each sentinel was tried once (the caller retries the whole question)
    assert (asked_first[0], asked_second[0]) == (1, 1)


@pytest.mark.slow
def test_a_client_follows_the_master_through_a_failover_and_the_sentinels_password() -> None:
    with sentinel_topology(sentinel_password="s3cret") as topology:
        settings = Settings(redis_url=topology.url, redis_sentinel_password="s3cret")
        client = connect(settings)
        client.set("before", "1")
        topology.wait_until_replicated()
        old = topology.master()
        # When the master is SIGKILLed
        old.kill()
        new = topology.wait_for_failover(old)
        # Then the same client, retrying through the outage, writes to the new master
        Durable(30)(client.set, "after", "2")
        assert new.client().get("after") == b"2" and new.client().get("before") == b"1"


@pytest.mark.slow
def test_a_run_enqueued_through_a_sentinel_url_lands_in_that_db_of_the_master(
    tmp_path: Path,
) -> None:
    with sentinel_topology() as topology:
        # Given a Sentinel URL naming database 3
        url = topology.url.removesuffix("/0") + "/3"
        env = {"RUNNER_REDIS_URL": url, "RUNNER_HOME": str(tmp_path), "RUNNER_TASKS": TASKS}
        # When the CLI enqueues a run through it
        result = CliRunner().invoke(cli, ["enqueue", "noop", "--json"], env=env)
        assert result.exit_code == 0, result.output
        token = json.loads(result.output)["token"]
        # Then the run and its job are in db 3 of the master the sentinels name, not in db 0
        master = topology.master()
        db3, db0 = Redis(port=master.port, db=3), Redis(port=master.port, db=0)
        assert db3.exists(Keys().run(token)) and db3.llen("rq:queue:default") == 1
        assert db0.dbsize() == 0
        # And a client of the same URL reads it back from there
        settings = Settings(home=tmp_path, redis_url=url)
        assert Runs(connect(settings), settings).get(token) is not None


class Interrupted(Exception):
    """Raised by a signal handler in the middle of a blocking read (as RQ's StopRequested)."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted


@pytest.mark.slow
def test_a_read_interrupted_midway_does_not_leave_its_reply_for_the_next_command() -> None:
    with sentinel_topology() as topology:
        client = connect(Settings(redis_url=topology.url))
        other = topology.master().client()
        # Given a blocking pop interrupted by a signal while it waits (a worker's SIGTERM)
        previous = signal.signal(signal.SIGALRM, _interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupted):
                client.blpop(["queue"], timeout=3)
        finally:
            signal.signal(signal.SIGALRM, previous)
        # When a job is pushed, then taken by the same client
        other.rpush("queue", "job-1")
        # Then the job goes to this pop, not to the abandoned one on a stale connection
        assert client.lpop("queue") == b"job-1"
        assert other.llen("queue") == 0
        # And a client that decodes replies gets them decoded through these connections too
        other.rpush("queue", "job-2")
        url = parse_sentinel_url(topology.url)
        decoded = master_client(url, sentinel_password=None, decode_responses=True)
        assert decoded.lpop("queue") == "job-2"


@pytest.mark.slow
def test_rq_works_through_the_sentinel_managed_connections() -> None:
    with sentinel_topology() as topology:
        # Given a horse built as `runner worker` builds it, on a Sentinel URL
        settings = Settings(redis_url=topology.url, queues=("a", "b"))
        redis = connect(settings, check=False)
        horse = Horse(list(settings.queues), connection=redis, serializer=JSONSerializer)
        # Then RQ's own connection objects (worker, queues, its pubsub) share that one pool,
        # whose connections ask the sentinels for the master and close when a read breaks
        pool = horse.connection.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.connection_class is ClosingSentinelConnection
        assert all(queue.connection.connection_pool is pool for queue in horse.queues)
        assert horse.connection.pubsub().connection_pool is pool
