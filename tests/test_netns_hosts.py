"""Three hosts as network namespaces, one supervisor each, one Redis with a password and one PostgreSQL.

Cutting a host's link gives partial answers naming exactly its nodes; a client of the cut host that knows
every host's URL moves to another host and is in the roster there; healing the link gives complete answers.
The figures (time to partial, time to the client's move, time to complete) are printed (`pytest -s`) as
`figure:` lines.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from sioplay.client.sim import SimClient
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.common.ports import free_port
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, short_timer_settings
from tests.helpers import async_http_json, async_wait_until
from tests.netns_fixtures import Hosts, NetnsHost, TcpForwarder, netns_hosts

NODES_PER_HOST = 2
PUBLIC_PORT = 5009  # each namespace has its own network stack, so each host can have the default port


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with netns_hosts(3) as made:
        yield made


@pytest.fixture
def bridge_redis(hosts: Hosts, tmp_path: Path, cluster_name: str) -> Iterator[EmbeddedRedis]:
    """A redis-server with passwords (ACL users), bound to the bridge address: every host reaches it."""
    server = EmbeddedRedis(tmp_path / "bridge-redis", host=hosts.bridge_address, channels=f"{cluster_name}*")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_db_url(hosts: Hosts, pg_database: str) -> Iterator[str]:
    """The test's PostgreSQL database, through a forwarder on the bridge address (the server listens on loopback)."""
    target = make_url(pg_database)
    port = free_port(hosts.bridge_address)
    with TcpForwarder((hosts.bridge_address, port), (target.host or "127.0.0.1", target.port or 5432)):
        yield target.set(host=hosts.bridge_address, port=port).render_as_string(hide_password=False)


def _start_supervisor(host: NetnsHost, settings: Settings) -> None:
    """`sioplay cluster start` inside the host's namespace, as an operator types it."""
    args = ["--nodes", str(NODES_PER_HOST), "--name", host.name, "--host", host.address]
    command = host.command(sys.executable, "-m", "sioplay", "cluster", "start", *args, "--db-url", str(settings.db_url))
    # The Redis URL (with its password) and the cluster secret go by the environment, never the process list.
    done = subprocess.run(command, env=settings.child_env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"{host.name}: {done.stdout}\n{done.stderr}"


async def _roster(host: NetnsHost, port: int | None = None) -> dict[str, Any]:
    _, body, _ = await async_http_json(f"http://{host.address}:{port or PUBLIC_PORT}/rooms/Maths", timeout_s=5)
    return body


async def test_three_hosts_partition_and_heal(
    clusters: Clusters, hosts: Hosts, bridge_redis: EmbeddedRedis, shared_db_url: str, cluster_name: str
) -> None:
    secret = secrets.token_hex(32)
    supervised = []
    for host in hosts.hosts:
        settings = short_timer_settings(clusters.tmp_path / host.name).replace(
            cluster=cluster_name,
            cluster_secret=secret,
            redis_url=bridge_redis.url,
            db_url=shared_db_url,
            host=host.address,
            name=host.name,
            public_port=PUBLIC_PORT,
            # A cut host's nodes lose Redis; this test is about the others' answers, not about restarts.
            health_timeout_s=60.0,
            # A client hears its node's silence after both (no RST comes from a cut host).
            ping_interval_s=1.0,
            ping_timeout_s=1.0,
        )
        cluster = clusters.track(settings)
        await asyncio.to_thread(_start_supervisor, host, settings)
        supervised.append(cluster)
    node_ids = {host.name: [f"{host.name}/node-{n}" for n in range(1, NODES_PER_HOST + 1)] for host in hosts.hosts}
    everyone = sorted(node for nodes in node_ids.values() for node in nodes)
    for host, cluster in zip(hosts.hosts, supervised, strict=True):
        assert [node.id for node in (await asyncio.to_thread(cluster.state)).nodes] == node_ids[host.name]

    one, two, three = hosts.hosts
    urls = {host.name: f"http://{host.address}:{PUBLIC_PORT}" for host in hosts.hosts}
    clients = [SimClient(urls[host.name], str(n), "Maths") for n, host in enumerate(hosts.hosts, 1)]
    # The third client knows every host, its own first; it moves when its connection drops.
    clients[2] = SimClient(
        [urls[three.name], urls[one.name], urls[two.name]], "3", "Maths", reconnection=True, reconnect_rounds=100
    )
    mover = clients[2]
    try:
        for client in clients:
            await client.connect()
        where = {str(n): client.handshake["node"] for n, client in enumerate(clients, 1)}  # type: ignore[index]
        for host, cluster in zip(hosts.hosts, supervised, strict=True):
            for node in (await asyncio.to_thread(cluster.state)).nodes:

                async def complete(port: int | None = node.port) -> dict[str, Any] | None:
                    body = await _roster(host, port)
                    return body if body["complete"] and len(body["users"]) == 3 else None

                body = await async_wait_until(complete, 15, f"a complete roster from {node.id}")
                assert body["nodes"]["answered"] == everyone and body["nodes"]["expected"] == len(everyone)
                assert {member["id_user"]: member["node"] for member in body["users"]} == where
        for n, host in enumerate(hosts.hosts, 1):
            assert where[str(n)].startswith(f"{host.name}/")

        cut_at = time.monotonic()
        three.cut()

        async def partial_without_three() -> dict[str, Any] | None:
            body = await _roster(one)
            return body if not body["complete"] and body["nodes"]["missing"] == node_ids[three.name] else None

        partial = await async_wait_until(partial_without_three, 15, f"a partial answer naming {three.name}'s nodes")
        to_partial = time.monotonic() - cut_at
        # Each answer comes back within the roster deadline, marked partial, naming exactly the cut host's nodes.
        assert partial["took_ms"] <= supervised[0].settings.roster_timeout_s * 1000 + 500, partial["took_ms"]
        assert partial["nodes"]["summary"] == (
            f"4 of 6 nodes answered; no answer from {', '.join(node_ids[three.name])}"
        )
        # User 3 is not counted on the cut host; it may already be back through another one.
        members = {(member["id_user"], member["node"]) for member in partial["users"]}
        assert {(n, where[n]) for n in ("1", "2")} <= members
        assert all(not node.startswith(f"{three.name}/") for _, node in members), members

        # The client of the cut host comes back through another host, as itself, in its room.
        def moved() -> str | None:
            node = mover.handshake.get("node") if mover.connected and mover.handshake else None
            return node if node is not None and not node.startswith(f"{three.name}/") else None

        moved_to = await async_wait_until(moved, 30, f"user 3 to reconnect through another host than {three.name}")
        to_moved = time.monotonic() - cut_at
        assert mover.url in (urls[one.name], urls[two.name]) and moved_to.startswith(
            (f"{one.name}/", f"{two.name}/")
        ), (mover.url, moved_to)
        assert [event.name for event in mover.events].count("disconnect") == 1

        async def three_moved() -> dict[str, Any] | None:
            body = await _roster(one)
            return (
                body
                if {"id_user": "3", "node": moved_to}
                in [{"id_user": member["id_user"], "node": member["node"]} for member in body["users"]]
                else None
            )

        await async_wait_until(three_moved, 15, f"user 3 on {moved_to} in the roster")
        to_roster = time.monotonic() - cut_at

        healed_at = time.monotonic()
        three.heal()

        async def complete_again() -> dict[str, Any] | None:
            body = await _roster(one)
            return body if body["complete"] and body["nodes"]["answered"] == everyone else None

        healed = await async_wait_until(complete_again, 30, f"complete answers once {three.name} is back")
        to_complete = time.monotonic() - healed_at
        assert {member["node"] for member in healed["users"] if member["id_user"] == "3"} >= {moved_to}
        print(f"\nfigure: cut -> first partial answer naming {three.name}'s nodes: {to_partial:.2f} s")
        print(f"figure: cut -> user 3 reconnected through another host ({moved_to}): {to_moved:.2f} s")
        print(f"figure: cut -> user 3 in the roster on {moved_to}: {to_roster:.2f} s")
        print(f"figure: heal -> first complete answer: {to_complete:.2f} s")
        print(f"figure: partial answer took {partial['took_ms']:.0f} ms")
    finally:
        three.heal()
        await asyncio.gather(*(client.disconnect() for client in clients))
