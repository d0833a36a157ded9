"""The cluster-wide roster: three real nodes on one real Redis, clients on chosen nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import psutil
import pytest
import redis

from sioplay.client.sim import SimClient
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http, async_http_json, async_wait_until, http_json, signed, wait_until


@pytest.fixture
def three_nodes(start_node: Callable[..., NodeHandle]) -> list[NodeHandle]:
    nodes = [start_node("node-a"), start_node("node-b"), start_node("node-c")]
    for node in nodes:
        wait_until(
            lambda node=node: len(http_json(node.url + "/cluster")[1]["nodes"]) == 3,
            5,
            f"{node.node_id} to see 3 nodes",
        )
    return nodes


async def connect_all(clients: list[SimClient], plan: list[tuple[NodeHandle, str, str]]) -> list[SimClient]:
    batch = [SimClient(node.url, id_user, room) for node, id_user, room in plan]
    clients.extend(batch)
    await asyncio.gather(*(client.connect() for client in batch))
    return batch


async def roster(node: NodeHandle, room: str, query: str = "") -> dict:
    status, body, headers = await async_http_json(f"{node.url}/rooms/{room}{query}")
    assert status in (200, 503), body
    body["_status"], body["_headers"] = status, headers
    return body


async def complete_roster(node: NodeHandle, room: str) -> dict | None:
    """The roster of `room` from `node` if it is complete, for waits."""
    body = await roster(node, room)
    return body if body["complete"] else None


async def has_sockets(node: NodeHandle, room: str, sockets: int) -> bool:
    return (await roster(node, room))["sockets"] == sockets


async def test_roster_is_exact_from_every_node(three_nodes, clients) -> None:
    a, b, c = three_nodes
    plan = [
        (a, "1", "Maths"),
        (a, "2", "Maths"),
        (b, "3", "Maths"),
        (b, "1", "Maths"),
        (c, "4", "Maths"),
        (c, "5", "Physics"),
    ]
    made = await connect_all(clients, plan)
    expected = sorted(
        ({"id_socket": cl.sid, "id_user": cl.id_user} for cl in made if cl.room == "Maths"),
        key=lambda m: (int(m["id_user"]), m["id_socket"]),
    )
    for node in three_nodes:
        status, body, headers = await async_http_json(f"{node.url}/Maths/users")
        assert status == 200
        assert body == expected, f"roster from {node.node_id}"
        assert headers["X-Sioplay-Complete"] == "true"
        assert headers["X-Sioplay-Nodes-Expected"] == "3" and headers["X-Sioplay-Nodes-Answered"] == "3"
        assert headers["X-Sioplay-Nodes-Missing"] == ""

        body = await roster(node, "Maths")
        assert body["complete"] is True and body["sockets"] == 5
        assert body["unique_users"] == 4, "user 1 has sockets on two nodes and counts once"
        assert body["nodes"]["answered"] == ["node-a", "node-b", "node-c"] and body["nodes"]["missing"] == []
        by_socket = {m["id_socket"]: m["node"] for m in body["users"]}
        assert by_socket == {cl.sid: cl.handshake["node"] for cl in made if cl.room == "Maths"}

    grouped = await roster(b, "Maths", "?group=user")
    user_one = next(u for u in grouped["users"] if u["id_user"] == "1")
    assert sorted(s["node"] for s in user_one["sockets"]) == ["node-a", "node-b"]

    empty = await roster(c, "Nobody")
    assert empty["users"] == [] and empty["complete"] is True and empty["sockets"] == 0

    status, rooms, _ = await async_http_json(f"{a.url}/rooms")
    assert status == 200 and rooms["complete"] is True
    assert rooms["rooms"] == [
        {"room": "Maths", "sockets": 5, "unique_users": 4},
        {"room": "Physics", "sockets": 1, "unique_users": 1},
    ]

    await made[0].disconnect()
    await async_wait_until(lambda: has_sockets(c, "Maths", 4), 5, "the roster to drop a disconnected socket")


async def test_repeated_queries_follow_joins_and_leaves_on_other_nodes(three_nodes, clients) -> None:
    """Each node's part is kept between queries; a join or a leave anywhere must still show at once."""
    a, b, c = three_nodes

    async def users_seen_by(node: NodeHandle) -> list[tuple[str, str]]:
        status, body, _ = await async_http_json(f"{node.url}/Maths/users")
        assert status == 200
        return [(m["id_user"], m["id_socket"]) for m in body]

    async def lost(node: NodeHandle, sid: str) -> bool:
        return sid not in dict(await users_seen_by(node)).values()

    first = await connect_all(clients, [(b, "2", "Maths"), (c, "3", "Maths")])
    for _ in range(2):
        assert await users_seen_by(a) == [("2", first[0].sid), ("3", first[1].sid)]
    late = (await connect_all(clients, [(c, "1", "Maths")]))[0]
    assert await users_seen_by(a) == [("1", late.sid), ("2", first[0].sid), ("3", first[1].sid)]
    await first[0].disconnect()
    await async_wait_until(lambda: lost(c, first[0].sid), 5, "node-b's part to lose the socket")
    assert await users_seen_by(a) == [("1", late.sid), ("3", first[1].sid)]
    assert await users_seen_by(b) == [("1", late.sid), ("3", first[1].sid)]


async def test_sigkilled_node_is_reported_then_forgotten(three_nodes, clients, seeded_settings: Settings) -> None:
    a, b, c = three_nodes
    await connect_all(clients, [(a, "1", "Maths"), (b, "2", "Maths"), (c, "3", "Maths")])
    c.kill()

    started = time.monotonic()
    body = await roster(a, "Maths")
    assert time.monotonic() - started < seeded_settings.roster_timeout_s + 1.0, "answers within the deadline"
    assert body["complete"] is False
    assert body["nodes"]["missing"] == ["node-c"]
    assert sorted(m["id_user"] for m in body["users"]) == ["1", "2"]
    assert body["_headers"]["X-Sioplay-Complete"] == "false" and body["_headers"]["X-Sioplay-Nodes-Missing"] == "node-c"
    assert (await roster(a, "Maths", "?strict=1"))["_status"] in (503, 200)

    after = await async_wait_until(lambda: complete_roster(b, "Maths"), 5, "node-c to be forgotten after its silence")
    assert after["nodes"]["answered"] == ["node-a", "node-b"] and after["sockets"] == 2
    assert after["took_ms"] < seeded_settings.roster_timeout_s * 1000 / 2, "no waiting for the deadline"
    health = (await async_http_json(a.url + "/healthz"))[1]
    assert health["metrics"]["partial_answers"] >= 1


async def test_strict_answers_503_while_a_node_is_missing(three_nodes) -> None:
    a, _, c = three_nodes
    c.kill()
    body = await roster(a, "Maths", "?strict=1&timeout_ms=300")
    assert body["_status"] == 503 and "node-c" in body["error"] and body["complete"] is False
    status, error, _ = await async_http_json(a.url + "/rooms/Maths?timeout_ms=soon")
    assert status == 400 and "timeout_ms" in error["error"]


@pytest.fixture
def patient_settings(seeded_settings: Settings) -> Settings:
    """Silence that takes 10 s to notice: a node that leaves quickly can only have said goodbye."""
    return dataclasses.replace(seeded_settings, heartbeat_interval_s=1.0, heartbeat_misses=10, roster_timeout_s=5.0)


def test_sigterm_goodbye_drops_the_node_at_once(start_node, patient_settings: Settings) -> None:
    a = start_node("node-a", patient_settings)
    b = start_node("node-b", patient_settings)
    wait_until(lambda: len(http_json(a.url + "/cluster")[1]["nodes"]) == 2, 5, "node-a to see node-b")
    assert b.stop() == 0
    wait_until(lambda: len(http_json(a.url + "/cluster")[1]["nodes"]) == 1, 2, "node-b's goodbye")
    for _ in range(5):
        body = asyncio.run(roster(a, "Maths"))
        assert body["complete"] is True and body["nodes"]["answered"] == ["node-a"]
        assert body["took_ms"] < 500


async def test_garbage_on_the_bus_is_dropped_and_counted(three_nodes, clients, seeded_settings: Settings) -> None:
    a, b, c = three_nodes
    await connect_all(clients, [(a, "1", "Maths"), (b, "2", "Maths"), (c, "3", "Maths")])
    instance_a = (await async_http_json(a.url + "/cluster"))[1]["nodes"][0]["instance"]
    channel = f"{seeded_settings.cluster}:bus"
    garbage = [
        (channel, b"not json at all"),
        (channel, b"[1, 2, 3]"),
        (channel, b'{"v": 99, "kind": "hello", "origin": "x", "instance": "y", "body": {}}'),
        (channel, b'{"v": 2, "kind": "launch-missiles", "origin": "x", "instance": "y", "body": {}}'),
        (
            channel,
            (
                b'{"v": 2, "kind": "roster-request", "origin": "x", "instance": "y", "request_id": "r",'
                b' "body": {"room": ""}}'
            ),
        ),
        (channel, b'{"v": 2, "kind": "heartbeat", "origin": "x", "instance": "y", "body": {"sockets": -1}}'),
        (channel, b'{"v": 2, "kind": "hello", "body": "' + b"x" * (seeded_settings.bus_max_message_bytes + 1) + b'"}'),
        (
            f"{channel}:{instance_a}",
            (
                b'{"v": 2, "kind": "roster-reply", "origin": "x", "instance": "0123456789abcdef", "request_id": "'
                + b"0" * 32
                + b'", "body": {"room": "Maths", "version": 1, "members": [["g", "9"]]}}'
            ),
        ),
    ]
    client = redis.Redis.from_url(seeded_settings.redis_url)
    try:
        # Signed as a node would sign them: what is checked here is the message itself.
        for target, payload in garbage:
            assert client.publish(target, signed(seeded_settings, target, payload)) >= 1
    finally:
        client.close()

    async def dropped_all() -> dict | None:
        health = (await async_http_json(a.url + "/healthz"))[1]
        return health if health["metrics"]["bus_dropped"] >= len(garbage) else None

    health = await async_wait_until(dropped_all, 5, "node-a to drop every garbage message")
    assert health["metrics"]["bus_dropped_by_reason"]["reply to unknown request"] == 1
    assert health["metrics"]["bus_dropped_by_reason"]["message is not JSON"] == 1
    assert len((await async_http_json(a.url + "/cluster"))[1]["nodes"]) == 3, "garbage never becomes a member"
    for node in three_nodes:
        body = await roster(node, "Maths")
        assert body["complete"] is True and sorted(m["id_user"] for m in body["users"]) == ["1", "2", "3"]
    metrics_text = (await async_http(a.url + "/metrics"))[1].decode()
    assert 'sioplay_bus_dropped_total{node="node-a",reason="message is not JSON"} 1' in metrics_text


async def test_two_clusters_on_one_redis_do_not_mix(start_node, seeded_settings: Settings, clients) -> None:
    other = dataclasses.replace(seeded_settings, cluster=seeded_settings.cluster + "x")
    red = [start_node("red-1"), start_node("red-2")]
    blue = start_node("blue-1", other)
    (john,) = await connect_all(clients, [(red[0], "1", "Maths")])
    (mike,) = await connect_all(clients, [(blue, "3", "Maths")])
    (mary,) = await connect_all(clients, [(red[1], "2", "Maths")])
    await john.wait_event("socket-connected", id_user="2")
    assert sorted(m["id_user"] for m in (await roster(red[0], "Maths"))["users"]) == ["1", "2"]
    blue_roster = await roster(blue, "Maths")
    assert [m["id_user"] for m in blue_roster["users"]] == ["3"] and blue_roster["nodes"]["answered"] == ["blue-1"]
    assert [e.data["id_user"] for e in john.events if e.name == "socket-connected"] == ["2"]
    assert not any(e.name == "socket-connected" for e in mike.events), "no broadcasts across clusters"


async def test_redis_restart_degrades_then_recovers(
    three_nodes, clients, redis_server, seeded_settings: Settings
) -> None:
    a, b, c = three_nodes
    await connect_all(clients, [(a, "1", "Maths"), (b, "2", "Maths"), (c, "3", "Maths")])
    redis_server.stop()
    deadline_s = seeded_settings.roster_timeout_s
    for node in three_nodes:
        started = time.monotonic()
        body = await roster(node, "Maths")
        assert time.monotonic() - started < deadline_s + 1.0, "never hangs past the deadline"
        assert body["complete"] is False
    assert (await roster(a, "Maths", "?strict=1"))["_status"] == 503
    status, health, _ = await async_http_json(a.url + "/healthz")
    assert status == 200 and health["redis"]["ok"] is False

    redis_server.start()
    for node in three_nodes:
        body = await async_wait_until(
            lambda node=node: complete_roster(node, "Maths"), 10, f"{node.node_id} to recover"
        )
        assert sorted(m["id_user"] for m in body["users"]) == ["1", "2", "3"]


async def test_a_frozen_node_is_not_waited_for_once_declared_down(three_nodes, clients) -> None:
    a, b, c = three_nodes
    await connect_all(clients, [(a, "1", "Maths"), (b, "2", "Maths"), (c, "3", "Maths")])
    frozen = psutil.Process(c.pid)
    frozen.suspend()
    try:

        async def declared_down() -> bool:
            nodes = (await async_http_json(a.url + "/cluster"))[1]["nodes"]
            return [entry["node"] for entry in nodes] == ["node-a", "node-b"]

        await async_wait_until(declared_down, 10, "node-a to declare node-c down")
        # Redis still counts node-c's subscription; its heartbeats decide, so the query does not wait 10 s for it.
        status, body, headers = await async_http_json(a.url + "/rooms/Maths?timeout_ms=10000")
        assert status == 200 and body["complete"] is False
        assert body["took_ms"] < 5000, body["took_ms"]
        assert body["nodes"] == {
            "expected": 3,
            "answered": ["node-a", "node-b"],
            "missing": ["node-c"],
            "summary": "2 of 3 nodes answered; no answer from node-c",
        }
        assert headers["X-Sioplay-Nodes-Missing"] == "node-c"
        assert sorted(member["id_user"] for member in body["users"]) == ["1", "2"]
    finally:
        frozen.resume()
    healed = await async_wait_until(lambda: roster_complete(a, "Maths"), 10, "node-c to be heard again and answer")
    assert sorted(member["id_user"] for member in healed["users"]) == ["1", "2", "3"]


async def roster_complete(node: NodeHandle, room: str) -> dict | None:
    body = await roster(node, room)
    return body if body["complete"] else None
