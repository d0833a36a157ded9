"""The cluster survives its dependencies dying: Redis SIGKILLed, a Redis that keeps dying, the SQLite file deleted,
PostgreSQL down. Nodes stay up (alive, not ready), say why, refuse new clients and recover by themselves.

Each test fails on the main before readiness: Redis was never restarted and nodes were killed for it, a deleted
SQLite file was reported nowhere and one node acknowledged a write to it, and a node without PostgreSQL looked
healthy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.engine import make_url

from sioplay.client.sim import SimClient
from sioplay.cluster.redis_server import ADMIN_USER, EmbeddedRedis
from sioplay.cluster.status import StatusCollector, render_status
from sioplay.db import schema
from sioplay.errors import ClientError, RedisError
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, RunningCluster, john_and_mary
from tests.forwarder import TcpForwarder
from tests.helpers import NodeHandle, async_http_json, async_wait_until


def redis_answers(cluster: RunningCluster, port: int) -> bool:
    try:
        EmbeddedRedis(cluster.home / "redis", port=port).endpoint(ADMIN_USER).command("PING", timeout_s=0.3)
    except RedisError:
        return False
    return True


def status_of(cluster: RunningCluster) -> dict[str, Any]:
    return StatusCollector().collect(cluster.state())


async def rosters_complete(cluster: RunningCluster, users: set[str]) -> bool:
    for node in cluster.state().nodes:
        _, body, _ = await async_http_json(cluster.node_url(node) + "/rooms/Maths?timeout_ms=500")
        if not body.get("complete") or {user["id_user"] for user in body["users"]} != users:
            return False
    return True


async def healthz(cluster: RunningCluster, node_id: str) -> dict[str, Any]:
    status, body, _ = await async_http_json(cluster.node_url(cluster.node(node_id)) + "/healthz")
    assert status == 200, body
    return body


async def refusal(url: str, id_user: str = "3") -> str:
    client = SimClient(url, id_user, "Maths")
    try:
        await client.connect(timeout_s=3.0)
    except ClientError as exc:
        return str(exc)
    await client.disconnect()
    return ""


async def test_redis_sigkilled_comes_back_on_its_port_and_rosters_heal_without_restarting_a_node(
    clusters: Clusters,
) -> None:
    # A back-off long enough to see the cluster without its Redis.
    cluster = clusters.start(nodes=3, restart_backoff_initial_s=2.0, restart_backoff_max_s=4.0)
    async with john_and_mary(cluster) as nodes:
        before = {node.id: node.pid for node in nodes}
        state = cluster.state()
        assert state.redis is not None and state.redis_url is not None
        port = make_url(state.redis_url).port
        assert await rosters_complete(cluster, {"1", "2"})

        os.kill(state.redis.pid, signal.SIGKILL)

        async def degraded() -> dict[str, Any] | None:
            body = await healthz(cluster, "node-3")
            return body if not body["ready"] and not body["dependencies"]["redis"]["ok"] else None

        body = await async_wait_until(degraded, 5.0, "node-3 to say Redis is down")
        assert body["alive"] is True and body["refusing_connections"].startswith("not ready: redis down")
        assert "not ready: redis down" in await refusal(cluster.node_url(nodes[2]))

        def redis_down() -> dict[str, Any] | None:
            status = status_of(cluster)
            return status if status["redis"]["supervision"]["status"] == "waiting-restart" else None

        down = await async_wait_until(lambda: asyncio.to_thread(redis_down), 5.0, "status to show Redis down")
        assert down["redis"]["pid"] is None and "SIGKILL" in down["redis"]["supervision"]["last_exit"], down["redis"]
        assert down["nodes"][0]["condition"].startswith("degraded (redis down"), down["nodes"][0]

        await async_wait_until(lambda: redis_answers(cluster, port), 10.0, "Redis to answer again on its port")
        back = time.monotonic()
        await async_wait_until(lambda: rosters_complete(cluster, {"1", "2"}), 10.0, "complete rosters everywhere")
        healed_s = time.monotonic() - back
        print(f"rosters complete on every node {healed_s:.2f} s after Redis answered again")

        # Redis answers before the supervisor's next tick has seen its start end and recorded it online.
        def redis_online() -> dict[str, Any] | None:
            status = status_of(cluster)
            return status if status["redis"]["supervision"]["status"] == "online" else None

        after = await async_wait_until(lambda: asyncio.to_thread(redis_online), 5.0, "status to show Redis online")
        assert {node["id"]: node["pid"] for node in after["nodes"]} == before, "no node was restarted"
        assert all(node["restarts"] == 0 and node["condition"] == "online" for node in after["nodes"]), after
        assert after["redis"]["supervision"]["status"] == "online" and after["redis"]["supervision"]["restarts"] == 1
        assert after["redis"]["pid"] != state.redis.pid and make_url(after["redis_url"]).port == port
        assert await refusal(cluster.node_url(nodes[2])) == "", "new clients are taken again"


async def test_a_redis_that_keeps_dying_is_errored_not_restarted_in_a_loop(clusters: Clusters) -> None:
    # A short health timeout: main killed a node whose Redis was down once it went that long without "healthy".
    cluster = clusters.start(nodes=1, restart_max_crashes=3, restart_crash_window_s=30.0, health_timeout_s=1.0)
    node_pid = cluster.node("node-1").pid
    killed: set[int] = set()
    for _ in range(3):
        state = await async_wait_until(
            lambda: (s := cluster.state()).redis is not None and s.redis.pid not in killed and s, 10.0, "a new Redis"
        )
        assert state.redis is not None
        killed.add(state.redis.pid)
        os.kill(state.redis.pid, signal.SIGKILL)

    def errored() -> dict[str, Any] | None:
        status = status_of(cluster)
        return status if status["redis"]["supervision"]["status"] == "errored" else None

    status = await async_wait_until(lambda: asyncio.to_thread(errored), 10.0, "Redis to be errored")
    supervision = status["redis"]["supervision"]
    assert supervision["restarts"] == 2 and "3 crashes within 30 s" in supervision["reason"]
    assert status["redis"]["pid"] is None
    assert "errored, 2 restarts: exited with signal SIGKILL" in _text(status)
    assert status["nodes"][0]["pid"] == node_pid and status["nodes"][0]["condition"].startswith("degraded (redis")

    def redis_down_for(seconds: float) -> dict[str, Any] | None:
        body = status_of(cluster)["nodes"][0]
        return body if body["dependencies"]["redis"]["for_s"] >= seconds else None

    node = await async_wait_until(lambda: asyncio.to_thread(redis_down_for, 3.0), 10.0, "three health timeouts")
    assert node["pid"] == node_pid and node["restarts"] == 0 and node["status"] == "online", "not restarted for Redis"


def _text(status: dict[str, Any]) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(render_status(status))
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


async def test_a_deleted_sqlite_file_is_reported_and_no_write_is_acknowledged(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    async with john_and_mary(cluster) as nodes:
        database = cluster.settings.default_db_path
        database.unlink()
        for node in nodes:
            status, body, _ = await async_http_json(cluster.node_url(node) + "/users/1", "PUT", {"name": "Lost"})
            assert status == 503 and "sioplay.db was deleted" in body["error"], (node.id, status, body)

        async def database_down(node_id: str) -> dict[str, Any] | None:
            body = await healthz(cluster, node_id)
            return body if not body["dependencies"]["database"]["ok"] else None

        for node in nodes:
            body = await async_wait_until(lambda: database_down(node.id), 5.0, f"{node.id} to report the database")
            assert body["ready"] is False and "sioplay.db was" in body["dependencies"]["database"]["error"]
        assert "not ready: database down" in await refusal(cluster.node_url(nodes[0]))
        status = await asyncio.to_thread(status_of, cluster)
        assert all(node["condition"].startswith("degraded (database down") for node in status["nodes"]), status

        # A database put back at the path is adopted by every node: writes are acknowledged again, and seen.
        await schema.reset(cluster.settings.effective_db_url)

        async def renamed() -> bool:
            status, _, _ = await async_http_json(cluster.node_url(nodes[0]) + "/users/1", "PUT", {"name": "Back"})
            return status == 204

        await async_wait_until(renamed, 10.0, "a write acknowledged on the new file")

        async def read_back() -> bool:
            status, user, _ = await async_http_json(cluster.node_url(nodes[1]) + "/users/1")
            assert status in (200, 503), (status, user)
            return status == 200 and user["name"] == "Back"

        await async_wait_until(read_back, 10.0, "the other node to read the write from the new file")
        after = await asyncio.to_thread(status_of, cluster)
        assert [node["pid"] for node in after["nodes"]] == [node.pid for node in nodes], "no node was restarted"


@pytest.mark.postgres
async def test_postgresql_down_refuses_writes_and_connects_then_recovers_without_a_restart(
    pg_database: str, settings: Settings, start_node: Callable[..., NodeHandle]
) -> None:
    url = make_url(pg_database)
    assert url.host is not None and url.port is not None or url.host is not None
    forwarder = TcpForwarder(url.host or "127.0.0.1", url.port or 5432)
    forwarder.up()
    try:
        through = url.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
        node = start_node("node-a", dataclasses.replace(settings, db_url=through))
        assert (await async_http_json(node.url + "/users/2", "PUT", {"name": "Maria"}))[0] == 204

        forwarder.down()
        status, body, _ = await async_http_json(node.url + "/users/2", "PUT", {"name": "Lost"})
        assert status == 503 and body["error"].startswith("user database unavailable"), body

        async def database_down() -> dict[str, Any] | None:
            _, body, _ = await async_http_json(node.url + "/healthz")
            return body if not body["dependencies"]["database"]["ok"] else None

        body = await async_wait_until(database_down, 10.0, "the node to report PostgreSQL down")
        assert body["alive"] is True and body["ready"] is False
        assert "not ready: database down" in await refusal(node.url)

        forwarder.up()

        async def ready() -> bool:
            _, body, _ = await async_http_json(node.url + "/healthz")
            return bool(body["ready"])

        await async_wait_until(ready, 10.0, "the node to be ready again")
        assert (await async_http_json(node.url + "/users/2", "PUT", {"name": "Back"}))[0] == 204
        assert await refusal(node.url) == ""

        # A PostgreSQL that does not answer at all: /healthz still answers at once (the node is not taken for hung).
        forwarder.stall()

        async def answered_quickly_and_down() -> bool:
            started = time.monotonic()
            _, body, _ = await async_http_json(node.url + "/healthz", timeout_s=1.0)
            assert time.monotonic() - started < 1.0
            return not body["dependencies"]["database"]["ok"]

        await async_wait_until(answered_quickly_and_down, 10.0, "the node to report a silent PostgreSQL")
        forwarder.up()
        await async_wait_until(ready, 10.0, "the node to be ready again after the silence")
        assert node.process is not None and node.process.poll() is None, "the same process throughout"
    finally:
        forwarder.close()
