"""Whoever reaches the cluster's Redis without its secret cannot speak for it: forged messages reach no client, no
roster and no log line, and each is dropped and counted."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from sioplay.client.sim import SimClient
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http, async_http_json, async_wait_until, signed

FORGED_INSTANCE = "0123456789abcdef"


def socketio_emit(event: str, data: object, room: str | None) -> bytes:
    """What python-socketio's pub/sub manager publishes for an emit, from a host that is not a node."""
    return orjson.dumps(
        {
            "method": "emit",
            "event": event,
            "data": data,
            "namespace": "/",
            "room": room,
            "skip_sid": None,
            "callback": None,
            "host_id": "forger",
        }
    )


def bus_message(kind: str, origin: str, body: dict[str, object], request_id: str | None = None) -> bytes:
    message = {"v": 2, "kind": kind, "origin": origin, "instance": FORGED_INSTANCE, "body": body}
    if request_id is not None:
        message["request_id"] = request_id
    return orjson.dumps(message)


async def dropped(node: NodeHandle) -> dict[str, int]:
    counts: dict[str, int] = (await async_http_json(node.url + "/healthz"))[1]["metrics"]["bus_dropped_by_reason"]
    return counts


async def test_forged_messages_reach_no_client_and_no_roster(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, clients: list[SimClient]
) -> None:
    node_a, node_b = start_node("node-a"), start_node("node-b")
    john, mary = SimClient(node_a.url, "1", "Maths"), SimClient(node_b.url, "2", "Maths")
    clients += [john, mary]
    await john.connect()
    await mary.connect()
    await john.wait_event("socket-connected", id_user="2")
    socketio_channel = f"{seeded_settings.cluster}:socketio"
    bus_channel = f"{seeded_settings.cluster}:bus"
    instance_a = (await async_http_json(node_a.url + "/cluster"))[1]["nodes"][0]["instance"]
    forged = [
        (socketio_channel, socketio_emit("identity-change", {"id_user": "7", "id_socket": "x"}, "Maths")),
        (socketio_channel, socketio_emit("handshake", {"node": "evil", "procid": 1, "id_socket": "x"}, None)),
        (
            socketio_channel,
            orjson.dumps({"method": "disconnect", "sid": mary.sid, "namespace": "/", "host_id": "forger"}),
        ),
        (bus_channel, bus_message("hello", "node-z", {"sockets": 5})),
        (
            f"{bus_channel}:{instance_a}",
            bus_message(
                "roster-reply", "node-z", {"room": "Maths", "version": 1, "members": [["ghost", "9"]]}, "0" * 32
            ),
        ),
        (bus_channel, bus_message("hello", "node-1\r\nSet-Cookie: a=b", {"sockets": 1})),
    ]
    publisher = aioredis.Redis.from_url(seeded_settings.redis_url)
    try:
        for channel, payload in forged:
            assert await publisher.publish(channel, payload) >= 1
        # Signed, so past the signature: an origin that could break a header or a log line is still refused.
        crlf = bus_message("hello", "node-1\r\nX-Forged: 1", {"sockets": 1})
        assert await publisher.publish(bus_channel, signed(seeded_settings, bus_channel, crlf)) == 2
    finally:
        await publisher.aclose()

    expected = {"bad signature": len(forged), "origin is not a valid origin": 1}
    for node in (node_a, node_b):
        # node-b is not subscribed to node-a's own channel: it drops one forgery less.
        want = {**expected, "bad signature": len(forged) - (node is node_b)}

        async def counted(node: NodeHandle = node, want: dict[str, int] = want) -> bool:
            return await dropped(node) == want

        await async_wait_until(counted, 5.0, f"{node.node_id} to drop and count every forgery")

    for node in (node_a, node_b):
        status, body, headers = await async_http_json(node.url + "/rooms/Maths")
        assert status == 200 and body["complete"] is True
        assert sorted(member["id_user"] for member in body["users"]) == ["1", "2"]
        assert body["nodes"]["answered"] == ["node-a", "node-b"] and body["nodes"]["expected"] == 2
        assert "\r" not in headers["X-Sioplay-Nodes-Missing"] and "X-Forged" not in headers
        cluster = (await async_http_json(node.url + "/cluster"))[1]
        assert sorted(entry["node"] for entry in cluster["nodes"]) == ["node-a", "node-b"]
        rooms = (await async_http_json(node.url + "/rooms"))[1]
        assert [room["room"] for room in rooms["rooms"]] == ["Maths"]
        assert "Set-Cookie" not in node.log_text() and "X-Forged" not in node.log_text()
    metrics = (await async_http(node_a.url + "/metrics"))[1].decode()
    assert f'sioplay_bus_dropped_total{{node="node-a",reason="bad signature"}} {len(forged)}' in metrics

    # A real event still crosses, so the forged ones were not merely delayed.
    await mary.emit("identity-change", {})
    await john.wait_event("identity-change", id_user="2")
    assert mary.connected, "a forged disconnect did not end her session"
    assert [event.name for event in john.events] == ["handshake", "socket-connected", "identity-change"]
    assert [event.name for event in mary.events] == ["handshake"]
