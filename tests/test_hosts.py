"""Two supervisors on one Redis (two state directories standing for two hosts): node ids, counts, status."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from sioplay.client.sim import SimClient
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.cluster.status import StatusCollector
from tests.cluster_fixtures import Clusters, RunningCluster
from tests.helpers import async_http_json, async_wait_until


def _two_supervisors(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path, names: tuple[str, str]
) -> tuple[RunningCluster, RunningCluster]:
    shared = {
        "redis_url": redis_server.url,
        "cluster": cluster_name,
        "cluster_secret": secrets.token_hex(32),
        "db_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
    }
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


async def test_two_supervisors_with_one_name_report_the_conflict_and_never_answer_complete(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str, tmp_path: Path
) -> None:
    first, second = await asyncio.to_thread(
        _two_supervisors, clusters, redis_server, cluster_name, tmp_path, ("web", "web")
    )

    def conflicts(cluster: RunningCluster) -> set[str]:
        return {conflict["node"] for conflict in _status(cluster)["bus"]["id_conflicts"]}

    for cluster in (first, second):
        await async_wait_until(
            lambda: asyncio.to_thread(lambda: conflicts(cluster) == {"web/node-1", "web/node-2"}),
            10,
            f"the conflict in the status of {cluster.home.name}",
        )
    node = (await asyncio.to_thread(first.state)).nodes[0]
    _, body, headers = await async_http_json(first.node_url(node) + "/rooms/Maths")
    assert body["complete"] is False and body["nodes"]["expected"] == 4, body["nodes"]
    assert headers["X-Sioplay-Nodes-Summary"].startswith(f"{len(body['nodes']['answered'])} of 4 nodes answered; ")
    log = (first.home / "logs" / "node-1.log").read_text() + (first.home / "logs" / "node-2.log").read_text()
    assert "already holds that id; give each supervisor of the cluster its own --name" in log
