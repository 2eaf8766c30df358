"""Waiting for replicas: at once with none connected, confirmed by one in sync, refused by a
stalled one (real servers: the test's own, and a Sentinel topology)."""

from __future__ import annotations

import pytest
from redis import Redis

from runner.config import Settings
from runner.connections.redis import connect
from runner.connections.replicas import Replicas
from runner.errors import NotReplicated
from runner.keys import Keys
from tests.sentinels import pause_replication, sentinel_topology


def test_with_no_replica_connected_nothing_is_waited_for(redis: Redis) -> None:
    replicas = Replicas(redis, Keys(), needed=1, wait_ms=60_000)
    replicas.confirm()  # returns at once: a minute's wait would time the test out
    assert replicas.connected() == 0 and redis.get(Keys().replication_probe) is None


@pytest.mark.slow
def test_a_replica_in_sync_confirms_and_a_stalled_one_does_not() -> None:
    with sentinel_topology() as topology:
        client = connect(Settings(redis_url=topology.url))
        replicas = Replicas(client, Keys(), needed=1, wait_ms=300)
        client.set("written", "1")
        replicas.confirm()
        assert topology.replica_of(topology.master()).client().get("written") == b"1"
        # When the replica stalls, a write is not confirmed
        pause_replication(topology.replica_of(topology.master()))
        client.set("written", "2")
        with pytest.raises(NotReplicated, match="0 of 1"):
            replicas.confirm()
