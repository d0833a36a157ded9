"""Two real node processes on one real Redis, real Socket.IO clients: the original's contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sioplay.client.sim import SimClient
from sioplay.errors import ClientError
from sioplay.node import patches
from tests.helpers import NodeHandle, async_http_json, http_json


@pytest.fixture
def two_nodes(start_node: Callable[..., NodeHandle]) -> tuple[NodeHandle, NodeHandle]:
    return start_node("node-a"), start_node("node-b")


async def connect(clients: list[SimClient], node: NodeHandle, id_user: str, room: str = "Maths") -> SimClient:
    client = SimClient(node.url, id_user, room)
    clients.append(client)
    await client.connect()
    return client


async def test_handshake_names_the_node_process_and_socket(two_nodes, clients) -> None:
    node_a, _ = two_nodes
    client = await connect(clients, node_a, "1")
    assert client.handshake == {"node": "node-a", "procid": node_a.pid, "id_socket": client.sid}


async def test_room_events_cross_nodes(two_nodes, clients) -> None:
    node_a, node_b = two_nodes
    john = await connect(clients, node_a, "1")
    mary = await connect(clients, node_b, "2")
    outsider = await connect(clients, node_b, "3", room="Physics")

    joined = await john.wait_event("socket-connected", id_socket=mary.sid)
    assert joined.data == {"id_socket": mary.sid, "id_user": "2", "node": node_b.node_id}

    await mary.emit("identity-change", {"id_user": "7", "name": "spoofed"})
    change = await john.wait_event("identity-change")
    assert change.data == {"id_user": "2", "id_socket": mary.sid, "node": node_b.node_id}

    mary_sid = mary.sid
    await mary.disconnect()
    left = await john.wait_event("socket-disconnected", id_socket=mary_sid)
    assert left.data == {"id_socket": mary_sid, "id_user": "2", "node": node_b.node_id}

    # john's join may reach mary too: node-a announces it after john's handshake, so it can arrive after mary joined.
    echoes = [e for e in mary.events if e.name == "socket-connected" and e.data.get("id_socket") == mary_sid]
    assert echoes == [], "no echo of one's own connect"
    assert {e.data["id_socket"] for e in mary.events if e.name == "socket-connected"} <= {john.sid}
    assert [event.name for event in outsider.events] == ["handshake"], "other rooms hear nothing"


@pytest.mark.parametrize(
    ("id_user", "room", "message"),
    [
        ("99", "Maths", "unknown id_user '99'"),
        ("", "Maths", "id_user is missing"),
        ("1", "", "room name is missing or empty"),
        ("1", "x" * 65, "room name is longer than 64 characters (65)"),
        ("1", "bad\x07room", "room name contains U+0007 (a control character)"),
    ],
)
async def test_refused_connections_say_why(two_nodes, clients, id_user: str, room: str, message: str) -> None:
    node_a, _ = two_nodes
    client = SimClient(node_a.url, id_user, room)
    with pytest.raises(ClientError) as refused:
        await client.connect()
    assert message in str(refused.value)
    assert not client.connected
    _, body, _ = await async_http_json(node_a.url + "/healthz")
    assert body["sockets"] == 0, "a refused socket is not left half-registered"


async def test_auth_payload_is_accepted(two_nodes, clients) -> None:
    import socketio

    node_a, _ = two_nodes
    sio = socketio.AsyncClient(reconnection=False)
    handshakes: list[dict] = []
    sio.on("handshake", handshakes.append)
    await sio.connect(node_a.url, transports=["websocket"], auth={"id_user": "4", "room": "Maths"})
    try:
        status, body, _ = await async_http_json(node_a.url + "/Maths/users")
        assert status == 200
        assert body == [{"id_socket": sio.get_sid("/"), "id_user": "4"}]
    finally:
        await sio.disconnect()


async def test_room_users_lists_this_nodes_sockets(two_nodes, clients) -> None:
    node_a, _ = two_nodes
    first = await connect(clients, node_a, "3")
    second = await connect(clients, node_a, "1")
    status, body, _ = await async_http_json(node_a.url + "/Maths/users")
    assert status == 200
    assert body == [{"id_socket": second.sid, "id_user": "1"}, {"id_socket": first.sid, "id_user": "3"}]
    assert (await async_http_json(node_a.url + "/Empty/users"))[1] == []
    status, body, _ = await async_http_json(node_a.url + "/" + "x" * 65 + "/users")
    assert status == 400 and "longer than 64" in body["error"]


def test_user_routes(two_nodes) -> None:
    node_a, node_b = two_nodes
    status, users, _ = http_json(node_a.url + "/users")
    assert status == 200 and len(users) == 10 and users[0] == {"id_user": "1", "name": "John"}
    assert http_json(node_a.url + "/users/10")[1] == {"id_user": "10", "name": "Victoria"}
    status, body, _ = http_json(node_a.url + "/users/99")
    assert status == 404 and "unknown id_user '99'" in body["error"]

    status, body, _ = http_json(node_a.url + "/users/2", "PUT", {"name": "  Maria  "})
    assert status == 204 and body is None
    assert http_json(node_b.url + "/users/2")[1] == {"id_user": "2", "name": "Maria"}, "every node sees the write"
    longest = "x" * 255
    assert http_json(node_a.url + "/users/4", "PUT", {"name": f" {longest} "})[0] == 204, "255 after trimming is fine"
    assert http_json(node_a.url + "/users/4")[1] == {"id_user": "4", "name": longest}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        ({"name": "Eve", "admin": True}, 400, "unknown fields: admin"),
        ({}, 400, "missing field 'name'"),
        ({"name": ""}, 400, "name"),
        ({"name": "   "}, 400, "name"),
        ({"name": "x" * 256}, 400, "255"),
        ({"name": 42}, 400, "name"),
        (b'{"name": "' + b"x" * 70_000 + b'"}', 413, "too large"),
    ],
)
def test_bad_updates_change_nothing(two_nodes, body, status: int, message: str) -> None:
    node_a, _ = two_nodes
    got_status, got, _ = http_json(node_a.url + "/users/3", "PUT", body)
    assert got_status == status, got
    assert message in got["error"]
    assert http_json(node_a.url + "/users/3")[1] == {"id_user": "3", "name": "Mike"}


def test_update_of_unknown_user_is_404(two_nodes) -> None:
    status, body, _ = http_json(two_nodes[0].url + "/users/99", "PUT", {"name": "Ghost"})
    assert status == 404 and "unknown id_user" in body["error"]


def test_health_page_and_errors(two_nodes) -> None:
    node_a, _ = two_nodes
    status, health, _ = http_json(node_a.url + "/healthz")
    assert status == 200
    assert health["node"] == "node-a" and health["pid"] == node_a.pid and health["sockets"] == 0
    assert health["redis"]["ok"] is True
    assert health["patches"] == {"active": list(patches.APPLICABLE), "inactive": {}}

    status, body, _ = http_json(node_a.url + "/no/such/route")
    assert status == 404 and body["status"] == 404

    import urllib.request

    with urllib.request.urlopen(node_a.url + "/ui/Maths?id_user=1", timeout=5) as page:
        html = page.read().decode()
    assert "/assets/socket.io.min.js" in html and "Maths" in html
    assert "cdn" not in html.lower() and "https://" not in html
    with urllib.request.urlopen(node_a.url + "/assets/socket.io.min.js", timeout=5) as script:
        assert b"Socket.IO v4" in script.read(300)
    with urllib.request.urlopen(node_a.url + "/assets/socket.io.LICENSE", timeout=5) as licence:
        assert b"The MIT License" in licence.read(), "the shipped client comes with its licence"
    assert http_json(node_a.url + "/ui/Maths?id_user=" + "9" * 300)[0] == 400, "a bad id_user is still an error"


def test_sigterm_disconnects_sockets_and_tells_the_room(two_nodes) -> None:
    node_a, node_b = two_nodes

    async def scenario() -> None:
        stay = SimClient(node_b.url, "1", "Maths")
        leave = SimClient(node_a.url, "2", "Maths")
        await stay.connect()
        await leave.connect()
        leave_sid = leave.sid
        try:
            assert await asyncio.to_thread(node_a.stop) == 0
            await stay.wait_event("socket-disconnected", id_socket=leave_sid)
            await leave.wait_for(lambda: not leave.connected, 5.0, "the server to disconnect")
        finally:
            await stay.disconnect()
            await leave.disconnect()

    asyncio.run(scenario())
