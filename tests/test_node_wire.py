"""What the node's clients cannot see through python-socketio's client: frame order, compression, Redis traffic.

Plus faults: a database that does not answer, and failures inside the node's own connect path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis

from sioplay.client.sim import SimClient
from sioplay.cluster.spawn import spawn_node
from sioplay.common.ports import free_port
from sioplay.errors import ClientError
from sioplay.node.app import Node
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http_json, async_wait_until, http_json, signed

FRAME_TIMEOUT_S = 5.0


def socket_io_url(node: NodeHandle, id_user: str, room: str) -> str:
    return f"ws://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=websocket&id_user={id_user}&room={room}"


async def test_the_connect_ack_reaches_the_client_before_the_handshake(start_node: Callable[..., NodeHandle]) -> None:
    node = start_node("node-a")
    async with aiohttp.ClientSession() as session, session.ws_connect(socket_io_url(node, "1", "Maths")) as ws:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            opened = await ws.receive_str()
            assert opened.startswith("0{"), opened
            await ws.send_str("40")
            first, second = await ws.receive_str(), await ws.receive_str()
    assert first.startswith("40{"), f"CONNECT first, got {first!r}"
    sid = json.loads(first[2:])["sid"]
    assert second.startswith('42["handshake"'), second
    assert json.loads(second[2:])[1] == {"node": "node-a", "procid": node.pid, "id_socket": sid}


async def negotiated_compression(node: NodeHandle) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(socket_io_url(node, "1", "Maths"), compress=15) as ws,
    ):
        return ws.compress


async def test_websocket_compression_is_off_unless_asked_for(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings
) -> None:
    plain = start_node("node-a")
    assert await negotiated_compression(plain) == 0, "permessage-deflate refused by default"
    compressing = start_node("node-b", dataclasses.replace(seeded_settings, ws_compression=True))
    assert await negotiated_compression(compressing) == 15


async def test_the_handshake_does_not_cross_redis(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, clients: list[SimClient]
) -> None:
    node = start_node("node-a")
    redis = aioredis.Redis.from_url(seeded_settings.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{seeded_settings.cluster}:socketio")
    try:
        client = SimClient(node.url, "1", "Maths")
        clients.append(client)
        await client.connect()
        published: list[bytes] = []

        async def heard_the_join() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                published.append(message["data"])
            return any(b"socket-connected" in data for data in published)

        await async_wait_until(heard_the_join, 5.0, "the room's socket-connected on the Redis channel")
        assert not [data for data in published if b"handshake" in data], "a handshake is for one local socket"
    finally:
        await pubsub.aclose()
        await redis.aclose()


def test_health_reports_a_growing_uptime(start_node: Callable[..., NodeHandle]) -> None:
    node = start_node("node-a")
    first = http_json(node.url + "/healthz")[1]["uptime_s"]
    assert first > 0
    status, again, _ = http_json(node.url + "/healthz")
    assert status == 200 and again["uptime_s"] >= first


async def john_and_mary(
    start_node: Callable[..., NodeHandle], clients: list[SimClient]
) -> tuple[NodeHandle, NodeHandle, SimClient, SimClient]:
    """node-a with John and node-b with Mary, both in Maths."""
    node_a, node_b = start_node("node-a"), start_node("node-b")
    john = SimClient(node_a.url, "1", "Maths")
    mary = SimClient(node_b.url, "2", "Maths")
    clients += [john, mary]
    await john.connect()
    await mary.connect()
    return node_a, node_b, john, mary


async def test_sigint_stops_a_node_like_sigterm(
    start_node: Callable[..., NodeHandle], clients: list[SimClient]
) -> None:
    _, leaving, john, mary = await john_and_mary(start_node, clients)
    mary_sid = mary.sid
    assert await asyncio.to_thread(leaving.stop, signum=signal.SIGINT) == 0
    await john.wait_event("socket-disconnected", id_socket=mary_sid)
    assert "SIGINT received" in leaving.log_text()


async def test_a_database_that_does_not_answer_is_a_clear_refusal(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings
) -> None:
    unreachable = dataclasses.replace(seeded_settings, db_url=f"postgresql://sioplay@127.0.0.1:{free_port()}/none")
    # Alive, never ready: it waits for its database instead of failing.
    node = start_node("node-a", unreachable, ready=False)
    status, body, _ = await async_http_json(node.url + "/users")
    assert status == 503 and body["error"] == "user database unavailable"
    status, body, _ = await async_http_json(node.url + "/users/1", "PUT", {"name": "Johnny"})
    assert status == 503
    client = SimClient(node.url, "1", "Maths")
    with pytest.raises(ClientError, match="not ready: database down"):
        await client.connect()
    health = (await async_http_json(node.url + "/healthz"))[1]
    assert health["sockets"] == 0 and health["ready"] is False and health["alive"] is True
    assert health["dependencies"]["redis"]["ok"] is True and health["dependencies"]["database"]["ok"] is False
    assert health["dependencies"]["database"]["error"].startswith("cannot reach postgresql://sioplay@127.0.0.1:")


@pytest.fixture
async def in_process_node(seeded_settings: Settings) -> AsyncIterator[Node]:
    """A node in the test's own process, so that a fault can be injected into its connect path."""
    node = Node(seeded_settings, "node-x", free_port())
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def members(node: Node, room: str) -> list[str]:
    return [sid for sid, _ in node.sio.manager.get_participants("/", room)]


async def test_an_error_in_the_connect_handler_leaves_nothing_behind(
    in_process_node: Node, clients: list[SimClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = in_process_node

    async def broken_lookup(id_user: str) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(node.store, "get", broken_lookup)
    client = SimClient(f"http://127.0.0.1:{node.port}", "1", "Maths")
    with pytest.raises(ClientError, match="internal server error"):
        await client.connect()
    await async_wait_until(lambda: not node.sio.eio.sockets, 5.0, "the refused connection to be gone")
    assert len(node.sockets) == 0 and members(node, "Maths") == []


async def test_a_socket_whose_announcement_fails_is_dropped_then_the_node_recovers(
    in_process_node: Node, clients: list[SimClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = in_process_node
    url = f"http://127.0.0.1:{node.port}"

    async def broken_announcement(*args: object, **kwargs: object) -> None:
        raise OSError("injected: Redis went away")

    monkeypatch.setattr(node.events, "_tell_room", broken_announcement)
    dropped = SimClient(url, "1", "Maths")
    clients.append(dropped)
    await dropped.connect()
    await dropped.wait_for(lambda: not dropped.connected, 5.0, "the server to drop the unannounced socket")
    assert len(node.sockets) == 0 and members(node, "Maths") == []
    # Over HTTP without blocking: this node answers from the test's own event loop.
    async with aiohttp.ClientSession() as session, session.get(url + "/rooms/Maths") as response:
        roster = await response.json()
    assert response.status == 200 and roster["users"] == [] and roster["complete"]

    monkeypatch.undo()
    kept = SimClient(url, "2", "Maths")
    clients.append(kept)
    await kept.connect()
    assert members(node, "Maths") == [kept.sid]


async def test_garbage_on_the_socketio_channel_changes_nothing(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, clients: list[SimClient]
) -> None:
    node_a, node_b = start_node("node-a"), start_node("node-b")
    john = SimClient(node_a.url, "1", "Maths")
    clients.append(john)
    await john.connect()
    garbage = [
        b"not json at all",
        b"[1, 2, 3]",
        b'"method"',
        b'{"method": "emit"}',
        b'{"method": "emit", "event": "socket-connected", "namespace": "/", "room": {"not": "a room"}, "data": 1}',
        b'{"method": "disconnect", "sid": ["x"], "namespace": "/"}',
        b'{"method": "enter_room"}',
        b"\xff\xfe" * 1000,
        b'{"method": "emit", "padding": "' + b"x" * seeded_settings.bus_max_message_bytes + b'"}',
    ]
    redis = aioredis.Redis.from_url(seeded_settings.redis_url)
    try:
        for payload in garbage:
            channel = f"{seeded_settings.cluster}:socketio"
            assert await redis.publish(channel, signed(seeded_settings, channel, payload)) == 2, "both nodes listen"
    finally:
        await redis.aclose()

    malformed = {
        "socket.io message is not JSON": 2,
        "socket.io message of unknown shape": 2,
        "socket.io message too large": 1,
    }

    async def counted(node: NodeHandle) -> bool:
        return (await async_http_json(node.url + "/healthz"))[1]["metrics"]["bus_dropped_by_reason"] == malformed

    for node in (node_a, node_b):
        await async_wait_until(
            lambda node=node: counted(node),
            5.0,
            f"{node.node_id} to drop and count the messages that are not python-socketio's",
        )
        assert "Unexpected Error in pubsub listening thread" not in node.log_text(), "the listener never restarted"

    mary = SimClient(node_b.url, "2", "Maths")
    clients.append(mary)
    await mary.connect()
    joined = await john.wait_event("socket-connected", id_socket=mary.sid)
    assert joined.data == {"id_socket": mary.sid, "id_user": "2", "node": node_b.node_id}
    assert [event.name for event in john.events] == ["handshake", "socket-connected"], "garbage reached nobody"
    assert john.connected
    for node in (node_a, node_b):
        _, body, _ = await async_http_json(node.url + "/rooms/Maths")
        assert body["complete"] and {user["id_user"] for user in body["users"]} == {"1", "2"}


@pytest.mark.parametrize("taken_port", ["own", "public"])
def test_a_taken_port_is_one_clear_line(seeded_settings: Settings, taken_port: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held, free = taken.getsockname()[1], free_port()
        port, public_port = (held, free) if taken_port == "own" else (free, held)
        node = spawn_node(seeded_settings, "node-x", port, subprocess.PIPE, public_port=public_port)
        try:
            output = node.communicate(timeout=60)[0].decode()
        finally:
            node.kill()
            node.wait()
    assert node.returncode == 1 and "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: node node-x cannot listen on port {port}") and "address already in use" in last
    assert "node node-x stopped" in output, "what it had started is stopped again"


async def test_an_oversized_event_drops_its_sender_only(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, clients: list[SimClient]
) -> None:
    _, node_b, john, mary = await john_and_mary(start_node, clients)
    mary_sid = mary.sid
    await mary.emit("identity-change", {"id_user": "2", "padding": "x" * (seeded_settings.max_http_body_bytes + 1)})
    await mary.wait_for(lambda: not mary.connected, 5.0, "the node to drop the sender of an oversized frame")
    left = await john.wait_event("socket-disconnected", id_socket=mary_sid)
    assert left.data == {"id_socket": mary_sid, "id_user": "2", "node": "node-b"}
    assert [event.name for event in john.events if event.name == "identity-change"] == [], "nothing was relayed"
    assert john.connected and (await async_http_json(node_b.url + "/healthz"))[1]["sockets"] == 0
