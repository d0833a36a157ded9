"""A cluster on services it does not run: the machine's Redis and PostgreSQL ("beyond one machine" settings)."""

from __future__ import annotations

import os

import pytest
import redis

from sioplay.cluster.status import StatusCollector
from sioplay.db import hide_password
from tests.cluster_fixtures import Clusters, alive_refs, complete_maths_users, john_and_mary
from tests.helpers import async_http_json

EXTERNAL_REDIS_URL = os.environ.get("SIOPLAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# CI sets this where the machine runs a Redis: one that does not answer there is a failure, not a skip.
REDIS_REQUIRED = os.environ.get("SIOPLAY_REQUIRE_REDIS") == "1"

pytestmark = pytest.mark.postgres


@pytest.fixture
def external_redis() -> str:
    client = redis.Redis.from_url(EXTERNAL_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"no Redis answers at {EXTERNAL_REDIS_URL} (SIOPLAY_TEST_REDIS_URL): {exc}"
        if REDIS_REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        client.close()
    return EXTERNAL_REDIS_URL


async def test_a_cluster_on_an_external_redis_and_postgresql(
    clusters: Clusters, external_redis: str, pg_database: str
) -> None:
    cluster = clusters.start(nodes=2, redis_url=external_redis, db_url=pg_database)
    state = cluster.state()
    assert state.redis is None, "no embedded Redis when one is given"
    status = StatusCollector().collect(state)
    assert status["cluster"] == cluster.settings.cluster
    assert status["redis_url"] == external_redis and status["redis"] == {
        "embedded": False,
        "pid": None,
        "binary": None,
        "version": None,
        "authenticated": False,
        "user": None,
        "supervision": None,
    }
    assert status["db_url"] == hide_password(pg_database)

    async with john_and_mary(cluster) as (node_1, node_2):
        assert (await async_http_json(cluster.node_url(node_1) + "/users/2", "PUT", {"name": "Maria"}))[0] == 204
        for node in (node_1, node_2):
            assert await complete_maths_users(cluster, node) == {"1", "2"}
        assert (await async_http_json(cluster.node_url(node_2) + "/users/2"))[1]["name"] == "Maria"

    cluster.stop()
    assert alive_refs(cluster.seen) == []
    client = redis.Redis.from_url(external_redis)
    try:
        assert client.ping(), "stopping the cluster leaves a Redis it did not start running"
    finally:
        client.close()
