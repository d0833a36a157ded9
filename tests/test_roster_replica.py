"""The `replica` roster mode: real nodes keep each other's parts from deltas, and stay exact when deltas are lost."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable

import psutil
import pytest

from sioplay.client.sim import SimClient
from sioplay.errors import ConfigError
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http, async_http_json, async_wait_until, http_json, wait_until

USERS = [str(n) for n in range(1, 11)]


@pytest.fixture
def replica_settings(seeded_settings: Settings) -> Settings:
    # A longer deadline than the fixture's 1 s: on a loaded machine a node asked for a part not current (a late
    # heartbeat) may take longer, and a partial answer would fail the checks of completeness.
    return dataclasses.replace(seeded_settings, roster_mode="replica", roster_timeout_s=3.0)


def start_all(start_node: Callable[..., NodeHandle], settings: list[Settings]) -> list[NodeHandle]:
    nodes = [start_node(f"node-{'abc'[index]}", each) for index, each in enumerate(settings)]
    for node in nodes:
        wait_until(
            lambda node=node: replicas_current(node, len(nodes) - 1),
            10,
            f"{node.node_id} to hold a current replica of every other node",
        )
    return nodes


def replicas_current(node: NodeHandle, peers: int) -> bool:
    roster = http_json(node.url + "/healthz")[1]["roster"]
    return len(roster["replicas"]) == peers and all(replica["current"] for replica in roster["replicas"])


@pytest.fixture
def three_replicas(start_node: Callable[..., NodeHandle], replica_settings: Settings) -> list[NodeHandle]:
    return start_all(start_node, [replica_settings] * 3)


async def health(node: NodeHandle) -> dict:
    return (await async_http_json(node.url + "/healthz"))[1]


async def members(node: NodeHandle, room: str = "Maths") -> tuple[bool, set[str]]:
    complete, found, _ = await members_and_nodes(node, room)
    return complete, found


async def members_and_nodes(node: NodeHandle, room: str = "Maths") -> tuple[bool, set[str], dict]:
    status, body, _ = await async_http_json(f"{node.url}/rooms/{room}")
    assert status == 200, body
    return body["complete"], {member["id_socket"] for member in body["users"]}, body["nodes"]


async def exact_everywhere(nodes: list[NodeHandle], expected: set[str]) -> bool:
    for node in nodes:
        complete, found = await members(node)
        if not complete or found != expected:
            return False
    return True


async def answered_from_replicas(node: NodeHandle, queries: int = 5) -> bool:
    """Whether `queries` queries on `node` were all answered without a bus request."""
    before = (await health(node))["metrics"]
    for _ in range(queries):
        await members(node)
    after = (await health(node))["metrics"]
    return (
        after["roster_bus_requests"] == before["roster_bus_requests"]
        and after["roster_replica_answers"] == before["roster_replica_answers"] + queries
    )


class Churn:
    """Clients joining and leaving room Maths on random nodes; `here` is who has its handshake and stays."""

    def __init__(self, nodes: list[NodeHandle], clients: list[SimClient], seed: int) -> None:
        self.nodes = nodes
        self.clients = clients
        self.random = random.Random(seed)
        self.here: dict[str, SimClient] = {}
        self.ever: set[str] = set()

    async def join(self, node: NodeHandle | None = None) -> SimClient:
        client = SimClient((node or self.random.choice(self.nodes)).url, self.random.choice(USERS), "Maths")
        self.clients.append(client)
        await client.connect()
        assert client.sid is not None
        self.here[client.sid] = client
        self.ever.add(client.sid)
        return client

    async def leave(self) -> None:
        sid = self.random.choice(sorted(self.here))
        client = self.here.pop(sid)
        await client.disconnect()

    async def step(self) -> None:
        if self.here and self.random.random() < 0.4:
            await self.leave()
        else:
            await self.join()


async def test_replica_answers_are_exact_under_churn_and_include_every_join_at_once(three_replicas, clients) -> None:
    churn = Churn(three_replicas, clients, seed=16)
    for _ in range(30):
        await asyncio.gather(*(churn.step() for _ in range(3)))
        # Read-your-join: every socket that has its handshake is in every node's answer, and nothing unknown is.
        for node in three_replicas:
            complete, found, answered = await members_and_nodes(node)
            assert complete, answered
            missed = {sid: churn.here[sid].handshake for sid in set(churn.here) - found}
            assert not missed, f"{node.node_id} misses joined sockets {missed}: {answered} {await health(node)}"
            assert found <= churn.ever, f"{node.node_id} names sockets that never were"
    expected = set(churn.here)
    await async_wait_until(lambda: exact_everywhere(three_replicas, expected), 10, "every node to drop the leavers")
    for node in three_replicas:
        assert await answered_from_replicas(node), f"{node.node_id} asked the other nodes"
        body = await health(node)
        assert body["roster"]["mode"] == "replica" and body["roster"]["replica_gaps"] == 0
        metrics_text = (await async_http(node.url + "/metrics"))[1].decode()
        answers = body["metrics"]["roster_replica_answers"]
        assert f'sioplay_roster_replica_answers_total{{node="{node.node_id}"}} {answers}' in metrics_text


@pytest.mark.parametrize("mode", ["ask", "replica"])
async def test_read_your_join_on_another_node(start_node, seeded_settings: Settings, clients, mode: str) -> None:
    """A client that has its handshake from node-a is in node-b's very next answer, in both modes."""
    a, b = (
        start_all(start_node, [dataclasses.replace(seeded_settings, roster_mode=mode)] * 2)
        if mode == "replica"
        else [
            start_node("node-a"),
            start_node("node-b"),
        ]
    )
    wait_until(lambda: len(http_json(b.url + "/cluster")[1]["nodes"]) == 2, 5, "node-b to see node-a")
    for index in range(15):
        client = SimClient(a.url, USERS[index % len(USERS)], "Maths")
        clients.append(client)
        await client.connect()
        complete, found = await members(b)
        assert complete and client.sid in found, f"join {index}: node-b's first answer after the handshake"
    assert (await health(b))["roster"]["mode"] == mode


async def test_lost_deltas_are_noticed_at_a_heartbeat_and_the_part_fetched(
    start_node, replica_settings: Settings, clients
) -> None:
    silent = dataclasses.replace(replica_settings, test_skip_part_deltas=True)
    a, b, c = start_all(start_node, [replica_settings, replica_settings, silent])
    churn = Churn([c], clients, seed=7)
    for _ in range(12):
        await churn.step()
    expected = set(churn.here)
    # node-c published no delta: the others learn of its part from its heartbeats' version, and fetch it.
    await async_wait_until(lambda: exact_everywhere([a, b], expected), 10, "node-a and node-b to fetch node-c's part")
    for node in (a, b):
        roster = (await health(node))["roster"]
        assert roster["replica_gaps"] >= 1 and roster["replica_fetches"] >= 1, roster
        assert await answered_from_replicas(node), f"{node.node_id} asked instead of answering from its replicas"


async def test_redis_restart_during_churn_makes_every_replica_fetched_again(
    three_replicas, clients, redis_server
) -> None:
    a, b, c = three_replicas
    churn = Churn(three_replicas, clients, seed=3)
    for _ in range(9):
        await churn.join()
    fetches_before = {node.node_id: (await health(node))["roster"]["replica_fetches"] for node in three_replicas}
    stopping = asyncio.to_thread(redis_server.stop)
    # Leaves while Redis goes away and is away: their deltas are lost.
    await asyncio.gather(stopping, churn.leave(), churn.leave())
    await churn.leave()
    await asyncio.to_thread(redis_server.start)
    for node in three_replicas:
        await async_wait_until(
            lambda node=node: replicas_current_async(node, 2),
            15,
            f"{node.node_id} to be ready with current replicas again",
        )
    for _ in range(3):
        await churn.join()
    expected = set(churn.here)
    await async_wait_until(lambda: exact_everywhere(three_replicas, expected), 10, "every node to be exact again")
    for node in three_replicas:
        roster = (await health(node))["roster"]
        assert roster["replica_fetches"] >= fetches_before[node.node_id] + 2, "every replica fetched again"
        # A replica counts as current only while its node was heard within two heartbeats: on a loaded machine
        # one late heartbeat makes a query ask that node instead, so this waits for a run of queries asking nobody.
        await async_wait_until(lambda node=node: answered_from_replicas(node), 10, f"{node.node_id} to ask nobody")


async def replicas_current_async(node: NodeHandle, peers: int) -> bool:
    """Whether `node` is ready (it takes clients again) and holds a current replica of every other node."""
    body = await health(node)
    replicas = body["roster"]["replicas"]
    return body["ready"] and len(replicas) == peers and all(replica["current"] for replica in replicas)


async def test_a_frozen_node_is_named_missing_once_declared_down(three_replicas, clients) -> None:
    a, b, c = three_replicas
    churn = Churn(three_replicas, clients, seed=5)
    for node in three_replicas:
        await churn.join(node)
    frozen = psutil.Process(c.pid)
    frozen.suspend()
    try:

        async def declared_down() -> bool:
            nodes = (await async_http_json(a.url + "/cluster"))[1]["nodes"]
            return [entry["node"] for entry in nodes] == ["node-a", "node-b"]

        await async_wait_until(declared_down, 10, "node-a to declare node-c down")
        # Redis still counts node-c's subscription: the answer cannot come from the replicas alone.
        status, body, _ = await async_http_json(a.url + "/rooms/Maths")
        assert status == 200 and body["complete"] is False and body["nodes"]["missing"] == ["node-c"]
        assert len(body["users"]) == 2
    finally:
        frozen.resume()
    expected = set(churn.here)
    await async_wait_until(lambda: exact_everywhere([a, b], expected), 10, "node-c to be heard again")
    # Once a heartbeat counts node-c as a member again and its part is fetched, node-a asks nobody.
    await async_wait_until(lambda: answered_from_replicas(a), 10, "node-a to answer from its replicas again")


def test_the_mode_is_checked_and_reaches_supervised_nodes(clusters) -> None:
    with pytest.raises(ConfigError, match="SIOPLAY_ROSTER_MODE"):
        Settings.from_env(environ={"SIOPLAY_ROSTER_MODE": "gossip"})
    cluster = clusters.start(nodes=2, roster_mode="replica")
    for node in cluster.state().nodes:
        assert http_json(cluster.node_url(node) + "/healthz")[1]["roster"]["mode"] == "replica"
