"""Two supervisors on one Redis (two state directories standing for two hosts): node ids, counts, status,
a name already live refused at start, and ids held twice reported and answered around."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.client.sim import SimClient
from sioplay.cluster.bus_view import hear_nodes
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.cluster.status import StatusCollector
from sioplay.common.ports import free_port
from sioplay.common.state import read_state
from sioplay.errors import ClusterError
from tests.cluster_fixtures import Clusters, RunningCluster
from tests.helpers import NodeHandle, async_http_json, async_wait_until


def _shared(redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path) -> dict[str, str]:
    """What every host of one cluster shares: the Redis, the cluster's name and secret, the database."""
    return {
        "redis_url": redis_server.url,
        "cluster": cluster_name,
        "cluster_secret": secrets.token_hex(32),
        "db_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
    }


def _two_supervisors(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path, names: tuple[str, str]
) -> tuple[RunningCluster, RunningCluster]:
    shared = _shared(redis_server, cluster_name, tmp_path)
    return (
        clusters.start(nodes=2, name=names[0], **shared),
        clusters.start(nodes=2, name=names[1], **shared),
    )


def _status(cluster: RunningCluster) -> dict[str, Any]:
    return StatusCollector().collect(cluster.state())


async def test_two_named_supervisors_have_unique_ids_one_count_and_see_each_other(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path
) -> None:
    web1, web2 = await asyncio.to_thread(
        _two_supervisors, clusters, redis_server, cluster_name, tmp_path, ("web1", "web2")
    )
    one, two = (await asyncio.to_thread(web1.state)).nodes, (await asyncio.to_thread(web2.state)).nodes
    assert [node.id for node in one] == ["web1/node-1", "web1/node-2"]
    assert [node.id for node in two] == ["web2/node-1", "web2/node-2"]
    # Log files keep the local short name.
    assert (web1.home / "logs" / "node-1.log").exists() and (web2.home / "logs" / "node-2.log").exists()

    john = SimClient(web1.node_url(one[0]), "1", "Maths")
    mary = SimClient(web2.node_url(two[1]), "2", "Maths")
    try:
        await john.connect()
        await mary.connect()

        async def complete(url: str) -> dict[str, Any] | None:
            _, body, _ = await async_http_json(url + "/rooms/Maths")
            return body if body["complete"] and len(body["users"]) == 2 else None

        for cluster, node in [(web1, one[1]), (web2, two[0])]:
            body = await async_wait_until(
                lambda: complete(cluster.node_url(node)), 10, f"a complete roster on {node.id}"
            )
            assert body["nodes"]["expected"] == 4
            assert body["nodes"]["answered"] == ["web1/node-1", "web1/node-2", "web2/node-1", "web2/node-2"]
            assert body["nodes"]["summary"] == "4 of 4 nodes answered"
            assert {member["id_user"]: member["node"] for member in body["users"]} == {
                "1": "web1/node-1",
                "2": "web2/node-2",
            }
    finally:
        await asyncio.gather(john.disconnect(), mary.disconnect())

    for mine, theirs, host in [(web1, two, "web2"), (web2, one, "web1")]:
        status = await asyncio.to_thread(_status, mine)
        others = {(peer["host"], peer["node"], peer["pid"]) for peer in status["bus"]["others"]}
        assert others == {(host, node.id, node.pid) for node in theirs}, status["bus"]
        assert status["bus"]["id_conflicts"] == []


def test_a_second_supervisor_under_a_name_live_on_the_bus_is_refused_before_it_spawns_anything(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path
) -> None:
    shared = _shared(redis_server, cluster_name, tmp_path)
    first = clusters.start(nodes=2, name="web1", **shared)
    nodes = first.state().nodes
    expected = (
        f"web1 is already in cluster {cluster_name} on this Redis: nodes "
        f"web1/node-1 (pid {nodes[0].pid} on host {socket.gethostname()}), "
        f"web1/node-2 (pid {nodes[1].pid} on host {socket.gethostname()}); give this supervisor its own --name"
    )

    with pytest.raises(ClusterError) as refused:
        clusters.start(nodes=2, name="web1", **shared)
    assert str(refused.value) == expected
    second = clusters.clusters[-1].home
    assert read_state(second) is None and not (second / "logs").exists(), "nothing was spawned"

    # As an operator types it: one line, exit 1.
    env = {"SIOPLAY_CLUSTER": cluster_name, "SIOPLAY_CLUSTER_SECRET": shared["cluster_secret"]}
    args = ["--home", str(tmp_path / "cli-home"), "cluster", "start", "--nodes", "1", "--name", "web1"]
    args += ["--redis-url", redis_server.url, "--port", str(free_port())]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"error: {expected}"], result.stderr
    assert read_state(tmp_path / "cli-home") is None

    # The live cluster is untouched, and another name is welcome.
    assert [(node.id, node.pid, node.status) for node in first.state().nodes] == [
        (node.id, node.pid, "online") for node in nodes
    ]
    assert [node.id for node in clusters.start(nodes=1, name="web2", **shared).state().nodes] == ["web2/node-1"]


async def test_the_start_check_listens_as_an_observer_that_rosters_do_not_wait_for(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path
) -> None:
    shared = _shared(redis_server, cluster_name, tmp_path)
    web1 = await asyncio.to_thread(lambda: clusters.start(nodes=2, name="web1", **shared))
    nodes = (await asyncio.to_thread(web1.state)).nodes
    url = web1.node_url(nodes[0])
    listening = asyncio.ensure_future(asyncio.to_thread(hear_nodes, clusters.settings(name="web2", **shared), 8.0))
    try:
        await async_wait_until(lambda: _observers(url), 5, "web1/node-1 to know that the start check listens")
        # One more subscriber than nodes: counted, known not to answer, not waited for.
        _, body, _ = await async_http_json(url + "/rooms/Maths?timeout_ms=60000", timeout_s=5)
        assert body["complete"] is True and body["nodes"]["expected"] == 2, body["nodes"]
        assert not listening.done(), "the answer came while the check was still listening"
    finally:
        heard = await listening
    host = socket.gethostname()
    assert [(node.node, node.pid, node.host) for node in heard] == [(node.id, node.pid, host) for node in nodes]
    await async_wait_until(lambda: _observers(url, 0), 5, "the observer gone after its goodbye")


async def _observers(url: str, count: int = 1) -> bool:
    """Whether the node at `url` counts `count` observers on the bus."""
    return (await async_http_json(url + "/cluster"))[1]["observers"] == count


async def test_a_node_id_held_twice_is_reported_and_rosters_answer_at_once_naming_it(
    clusters: Clusters,
    redis_server: EmbeddedRedis,
    cluster_name: str,
    tmp_path: Path,
    start_node: Callable[..., NodeHandle],
) -> None:
    shared = _shared(redis_server, cluster_name, tmp_path)
    first = await asyncio.to_thread(lambda: clusters.start(nodes=2, name="web", **shared))
    # What the start-up check cannot see: a process under a live id, started by hand (or at the same moment).
    intruder_settings = first.settings.replace(home=tmp_path / "intruder")
    intruder = await asyncio.to_thread(start_node, "web/node-1", intruder_settings, None, False)

    def conflicts() -> set[str]:
        return {conflict["node"] for conflict in _status(first)["bus"]["id_conflicts"]}

    await async_wait_until(
        lambda: asyncio.to_thread(lambda: conflicts() == {"web/node-1"}), 10, "the conflict in the status"
    )
    node = (await asyncio.to_thread(first.state)).nodes[0]
    # web/node-1 and the intruder refuse each other; web/node-2 heard web/node-1 first and refuses the intruder,
    # and says so in its heartbeats.
    for url, answered, missing in [
        (first.node_url(node), ["web/node-1", "web/node-2"], ["web/node-1 (duplicate id)"]),
        (intruder.url, ["web/node-1"], ["web/node-1 (duplicate id)", "web/node-2 (refuses this node's duplicate id)"]),
    ]:

        async def settled(url: str = url, missing: list[str] = missing) -> bool:
            # Until the intruder has heard web/node-2's heartbeat say that it refuses the intruder.
            _, body, _ = await async_http_json(url + "/rooms/Maths", timeout_s=10)
            return body["nodes"]["missing"] == missing

        await async_wait_until(settled, 15, f"the partial answer of {url} naming {missing}")
        # A deadline far beyond the client's: an answer that waited for it would never arrive.
        _, body, headers = await async_http_json(url + "/rooms/Maths?timeout_ms=60000", timeout_s=10)
        assert body["complete"] is False and body["nodes"]["expected"] == 3, body["nodes"]
        assert body["nodes"]["answered"] == answered and body["nodes"]["missing"] == missing, body["nodes"]
        summary = f"{len(answered)} of 3 nodes answered; no answer from {', '.join(missing)}"
        assert headers["X-Sioplay-Nodes-Summary"] == summary
    log = (first.home / "logs" / "node-1.log").read_text()
    assert "already holds that id; give each supervisor of the cluster its own --name" in log
