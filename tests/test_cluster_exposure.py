"""What a cluster exposes on this machine: listeners on loopback unless told otherwise, files for its owner only,
and no secret anywhere but in the file meant to hold it."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import subprocess

import psutil

from sioplay.cluster.launcher import start_detached
from sioplay.cluster.redis_server import ADMIN_USER, NODE_USER
from sioplay.cluster.spawn import spawn_node
from sioplay.common.cluster_secret import SECRET_FILE
from sioplay.common.exposure import is_loopback
from sioplay.common.state import read_state
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, complete_maths_users, john_and_mary
from tests.helpers import async_http_json
from tests.test_cluster_cli import sioplay

WARNING = "beyond this machine's loopback, without authentication"


def listening_on(pid: int) -> set[tuple[str, int]]:
    return {
        (connection.laddr.ip, connection.laddr.port)
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }


def test_is_loopback() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "", "10.0.0.1", "example.com", "128.0.0.1"))


def test_a_default_cluster_start_listens_on_loopback_only(clusters: Clusters) -> None:
    # The host left at the settings' default, not the fixtures' explicit 127.0.0.1.
    settings = dataclasses.replace(clusters.settings(), host=Settings().host)
    cluster = clusters.track(settings)
    started = sioplay(settings, "cluster", "start", "--nodes", "2")
    assert started.returncode == 0, started.stderr
    assert "warning" not in started.stderr, started.stderr
    state = cluster.state()
    assert state.host == "127.0.0.1" and state.redis is not None
    redis_port = int(state.redis_url.rsplit(":", 1)[1].split("/")[0]) if state.redis_url else None
    expected = {state.redis.pid: {redis_port}}
    expected |= {node.pid: {node.port, settings.public_port} for node in state.nodes if node.pid is not None}
    assert len(expected) == 3
    for pid, ports in expected.items():
        listeners = listening_on(pid)
        assert {port for _, port in listeners} >= ports, (pid, listeners)
        assert all(ipaddress.ip_address(address).is_loopback for address, _ in listeners), (pid, listeners)
    assert listening_on(state.supervisor.pid) == set(), "the supervisor listens on nothing"


def test_listening_beyond_loopback_warns_before_anything_starts(clusters: Clusters, seeded_settings: Settings) -> None:
    settings = clusters.settings()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.public_port))
        taken.listen()
        refused = sioplay(settings, "cluster", "start", "--nodes", "1", "--host", "0.0.0.0")
        assert refused.returncode == 1
        warning, error = " ".join(refused.stderr.split()).split(" error: ")
        assert warning.startswith("warning: listening on 0.0.0.0, " + WARNING), refused.stderr
        assert "anyone who reaches these ports can join any room as any user and rename anyone" in warning
        assert "'--host 127.0.0.1' keeps the cluster local" in warning
        assert error.startswith(f"public port {settings.public_port} is already in use"), refused.stderr
        assert read_state(settings.home) is None, "nothing was started"

        wide = dataclasses.replace(seeded_settings, host="0.0.0.0")
        node = spawn_node(wide, "node-x", settings.public_port, subprocess.PIPE)
        try:
            output = node.communicate(timeout=60)[0].decode()
        finally:
            node.kill()
            node.wait()
    assert node.returncode == 1, output
    assert f"WARNING node-x pid={node.pid} sioplay.commands.node: listening on 0.0.0.0, {WARNING}" in output, output
    assert f"cannot listen on port {settings.public_port}" in output.strip().splitlines()[-1]


async def test_every_file_a_cluster_writes_is_private_and_holds_no_secret(clusters: Clusters) -> None:
    settings = clusters.settings()
    cluster = clusters.track(settings)
    # The typical session: the database first, from the CLI, then the cluster.
    reset = await asyncio.to_thread(sioplay, settings, "db", "reset")
    assert reset.returncode == 0, reset.stderr
    await asyncio.to_thread(start_detached, settings, 2)
    async with john_and_mary(cluster) as nodes:
        assert (await async_http_json(cluster.public_url + "/users/2", "PUT", {"name": "Maria"}))[0] == 204
        assert await complete_maths_users(cluster, nodes[1]) == {"1", "2"}
    await asyncio.to_thread(cluster.stop)

    home = settings.home
    secret_files = [home / "redis" / f"{user}.password" for user in (ADMIN_USER, NODE_USER)] + [home / SECRET_FILE]
    secrets = {path: path.read_text().strip().encode() for path in secret_files}
    assert all(len(secret) == 64 for secret in secrets.values())
    written = sorted(path for path in home.rglob("*") if path.is_file())
    names = {str(path.relative_to(home)) for path in written}
    assert names >= {
        "sioplay.db",
        "cluster-secret",
        "cluster/state.json",
        "cluster/supervisor.out",
        "logs/supervisor.log",
        "logs/node-1.log",
        "logs/node-2.log",
        "redis/redis.conf",
        "redis/redis.log",
        f"redis/{ADMIN_USER}.password",
        f"redis/{NODE_USER}.password",
    }, names
    assert home.stat().st_mode & 0o777 == 0o700
    for path in [home, *home.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode & 0o777)}"
    for path in written:
        content = path.read_bytes()
        for owner, secret in secrets.items():
            assert secret not in content or path == owner, f"{path} holds the secret of {owner.name}"
