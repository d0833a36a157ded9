"""The node's one Redis subscription: a handler that raises is counted, and the subscription stays; unsigned messages
reach no handler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from sioplay.client.sim import SimClient
from sioplay.cluster.redis_server import NODE_USER, EmbeddedRedis
from sioplay.common.ports import free_port
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.errors import ClientError
from sioplay.node.app import Node
from sioplay.node.bus_message import BusMessage
from sioplay.node.redis_wire import RedisPublisher, Subscription
from sioplay.node.signing import MessageSigner
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_wait_until


async def pubsub_client_ids(admin_url: str) -> set[str]:
    """The ids of the pub/sub connections (CLIENT LIST is the admin's, not the nodes')."""
    client = aioredis.Redis.from_url(admin_url)
    try:
        listing = await client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
    finally:
        await client.aclose()
    text = listing.decode() if isinstance(listing, bytes) else listing
    return {
        field.removeprefix("id=") for line in text.splitlines() for field in line.split() if field.startswith("id=")
    }


async def test_a_handler_that_raises_leaves_the_subscription_subscribed(
    settings: Settings, redis_server: EmbeddedRedis
) -> None:
    assert settings.redis_url is not None
    # Channels of the test's cluster: the nodes' credential may use no others.
    first, second = f"{settings.cluster}:first", f"{settings.cluster}:second"
    first_b, second_b = first.encode(), second.encode()
    received: list[tuple[str, bytes]] = []
    errors: list[tuple[str, str]] = []

    def on_first(data: bytes) -> None:
        if data == b"boom":
            raise ValueError("injected")
        received.append(("first", data))

    forged: list[str] = []
    signer = MessageSigner(b"k" * 32)
    subscription = Subscription(
        RedisEndpoint.from_url(settings.redis_url),
        signer,
        0.5,
        on_handler_error=lambda channel, exc: errors.append((channel, str(exc))),
        on_forged=forged.append,
    )
    subscription.add(first, on_first)
    subscription.add(second, lambda data: received.append(("second", data)))
    subscription.start()
    publisher = aioredis.Redis.from_url(settings.redis_url)
    try:
        await asyncio.wait_for(subscription.subscribed.wait(), 5.0)
        before = await pubsub_client_ids(redis_server.admin_url)
        assert len(before) == 1, "both channels on one connection"
        # One write, so that the bad message and the next ones arrive in the same read.
        async with publisher.pipeline(transaction=False) as pipe:
            for channel, payload in [(first_b, b"boom"), (first_b, b"after"), (second_b, b"other")]:
                pipe.publish(channel, signer.sign(channel, payload))
            pipe.publish(first, b"unsigned")
            pipe.publish(first, signer.sign(second_b, b"signed for another channel"))
            pipe.publish(second, MessageSigner(b"x" * 32).sign(second_b, b"signed with another secret"))
            pipe.publish(second, signer.sign(second_b, b"last"))
            await pipe.execute()
        await async_wait_until(lambda: len(received) == 3, 5.0, "the messages after the bad ones")
        assert received == [("first", b"after"), ("second", b"other"), ("second", b"last")]
        assert errors == [(first, "injected")]
        assert forged == [first, first, second]
        assert subscription.subscribed.is_set()
        assert await pubsub_client_ids(redis_server.admin_url) == before, "the same connection, never reopened"
    finally:
        await publisher.aclose()
        assert await subscription.stop(2.0)


async def test_a_node_whose_bus_handler_raises_answers_the_next_query(
    seeded_settings: Settings, start_node: Callable[..., NodeHandle], redis_server: EmbeddedRedis
) -> None:
    assert seeded_settings.redis_url is not None
    node = Node(seeded_settings, "node-x", free_port())
    await node.start()
    try:
        asker = start_node("node-y")
        answer = node.bus.handlers["roster-request"]
        failures = 0

        def fails_once(message: BusMessage) -> dict[str, object]:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise RuntimeError("injected")
            return answer(message)

        node.bus.handlers["roster-request"] = fails_once
        await async_wait_until(lambda: len(node.bus.live_nodes()) == 1, 5.0, "node-y on the bus")
        before = await pubsub_client_ids(redis_server.admin_url)
        async with aiohttp_session() as session:
            first = await get_json(session, asker.url + "/rooms/Maths?timeout_ms=500")
            assert first["complete"] is False and first["nodes"]["missing"] == ["node-x"]
            second = await get_json(session, asker.url + "/rooms/Maths?timeout_ms=5000")
            assert second["complete"] is True and second["nodes"]["answered"] == ["node-x", "node-y"]
            async with session.get(f"http://127.0.0.1:{node.port}/metrics") as response:
                metrics = await response.text()
        assert await pubsub_client_ids(redis_server.admin_url) == before, "no node resubscribed"
        channel = f"{seeded_settings.cluster}:bus"
        assert f'sioplay_handler_errors_total{{node="node-x",channel="{channel}"}} 1' in metrics
    finally:
        await node.stop()


def aiohttp_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_background_task_that_dies_takes_the_node_off_the_bus(
    seeded_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails on main before readiness: /healthz answered 200 and the node looked alive with its heartbeat dead."""
    node = Node(seeded_settings, "node-x", free_port())
    await node.start()
    url = f"http://127.0.0.1:{node.port}"
    try:
        async with aiohttp_session() as session:

            async def health() -> tuple[int, dict[str, Any]]:
                async with session.get(url + "/healthz") as response:
                    return response.status, await response.json()

            async def linked() -> bool:
                status, body = await health()
                return status == 200 and bool(body["bus"]["linked"]) and body["ready"]

            async def failing() -> dict[str, Any] | None:
                status, body = await health()
                return body if status == 503 else None

            await async_wait_until(linked, 5.0, "the node to be linked and ready")

            def broken_presence() -> int:
                raise RuntimeError("injected")

            # The heartbeat reads presence on every beat: it dies on the next one.
            node.bus.presence = broken_presence
            body = await async_wait_until(failing, 5.0, "the dead heartbeat to make /healthz answer 503")
        assert body["alive"] is False and body["ready"] is False and body["bus"]["linked"] is False
        assert body["bus"]["failures"] == ["bus-heartbeat died: RuntimeError: injected"]
        assert body["refusing_connections"] == "not ready: node failing, being replaced"
        assert any("background task bus-heartbeat died" in record.getMessage() for record in caplog.records)
        client = SimClient(url, "1", "Maths")
        with pytest.raises(ClientError, match="node failing"):
            await client.connect()
    finally:
        await node.stop()


async def node_connections(admin_url: str) -> int:
    """How many connections the nodes' ACL user holds (CLIENT LIST is the admin's)."""
    client = aioredis.Redis.from_url(admin_url)
    try:
        listing = await client.execute_command("CLIENT", "LIST", "TYPE", "normal")
    finally:
        await client.aclose()
    text = listing.decode() if isinstance(listing, bytes) else listing
    return sum(1 for line in text.splitlines() if f"user={NODE_USER}" in line.split())


async def test_concurrent_first_uses_of_the_publisher_share_one_attempt(
    settings: Settings, redis_server: EmbeddedRedis
) -> None:
    """The heartbeat's first PUBLISH and a /healthz PING raced in `_connect`: the second caller found the attempt
    already forgotten (AttributeError), and the first caller's cancel ended the attempt for everyone."""
    assert settings.redis_url is not None
    endpoint = RedisEndpoint.from_url(settings.redis_url)
    publisher = RedisPublisher(endpoint, MessageSigner(b"k" * 32))
    try:
        callers = [asyncio.ensure_future(publisher.ping()) for _ in range(10)]
        callers.append(asyncio.ensure_future(publisher.publish(f"{settings.cluster}:x", b"first")))
        await asyncio.sleep(0)  # every caller is now waiting on the one attempt
        callers[0].cancel()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [None] * 9 + [0], results
        assert await node_connections(redis_server.admin_url) == 1
    finally:
        await publisher.close()

    # Nothing listens: every concurrent caller gets the one ConnectionError, and the next use tries again.
    refused = RedisPublisher(RedisEndpoint(host="127.0.0.1", port=free_port()), MessageSigner(b"k" * 32))
    results = await asyncio.gather(*(refused.ping() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results), results
    with pytest.raises(ConnectionError):
        await refused.ping()
    await refused.close()


async def test_a_dead_socketio_listener_makes_the_node_failing(seeded_settings: Settings) -> None:
    node = Node(seeded_settings, "node-x", free_port())
    await node.start()
    try:
        node.manager.thread.cancel()
        async with aiohttp_session() as session:

            async def failing() -> dict[str, Any] | None:
                async with session.get(f"http://127.0.0.1:{node.port}/healthz") as response:
                    return await response.json() if response.status == 503 else None

            body = await async_wait_until(failing, 5.0, "/healthz to answer 503")
        assert body["alive"] is False and body["bus"]["failures"] == ["socketio-listener ended"]
    finally:
        await node.stop()
