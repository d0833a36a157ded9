"""A cluster whose supervisor or state file is gone can still be seen and stopped: real processes throughout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psutil
import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.client.sim import DISCONNECT, SimClient
from sioplay.cluster.recovery import ORPHANS_EXIT_CODE, lock_holder
from sioplay.common.pids import ProcessRef, find
from sioplay.common.state import ClusterState, NodeRecord, is_running, read_state, state_path
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, RunningCluster, alive_refs, complete_maths_users
from tests.helpers import async_wait_until, wait_until


def sioplay(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sioplay", "--home", str(settings.home), *args],
        env={**settings.child_env(), "COLUMNS": "200"},
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _kill_supervisor(cluster: RunningCluster) -> None:
    supervisor = find(cluster.state().supervisor)
    assert supervisor is not None
    supervisor.kill()
    psutil.wait_procs([supervisor], timeout=5)


def test_status_names_the_orphans_of_a_dead_supervisor(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    state = cluster.state()
    _kill_supervisor(cluster)

    _assert_status_names_the_orphans(cluster, state)

    result = sioplay(cluster.settings, "cluster", "stop")
    assert result.returncode == 0, result.stderr
    assert alive_refs(set(state.processes())) == []
    assert sioplay(cluster.settings, "cluster", "status").returncode == 1


@pytest.mark.parametrize("damage", ["corrupt", "deleted"])
def test_stop_and_status_work_without_a_readable_state_file(clusters: Clusters, damage: str) -> None:
    cluster = clusters.start(nodes=2)
    state = cluster.state()
    path = state_path(cluster.home)

    def spoil() -> None:
        if damage == "corrupt":
            path.write_text('{"garbage":')
        else:
            path.unlink()

    spoil()
    result = sioplay(cluster.settings, "cluster", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert {node["id"] for node in json.loads(result.stdout)["nodes"]} == {node.id for node in state.nodes}

    # The supervisor writes the file again by itself.
    spoil()
    wait_until(lambda: _readable(cluster), 5, "state.json written again")

    spoil()
    # In this process: the supervisor is this process's child, and only its parent can reap it.
    result = CliRunner().invoke(app, ["--home", str(cluster.home), "cluster", "stop"])
    assert result.exit_code == 0, result.output
    assert "stopped cluster" in result.output
    assert alive_refs({*state.processes(), state.supervisor}) == []
    assert lock_holder(cluster.home) is None


@pytest.mark.parametrize("damage", ["corrupt", "deleted"])
def test_a_dead_supervisors_processes_are_found_and_stopped_without_a_state_file(
    clusters: Clusters, damage: str
) -> None:
    cluster = clusters.start(nodes=2)
    state = cluster.state()
    _kill_supervisor(cluster)
    path = state_path(cluster.home)
    if damage == "corrupt":
        path.write_text('{"garbage":')
    else:
        path.unlink()

    # The lock file holds a second copy of the pids, written by the supervisor alone.
    _assert_status_names_the_orphans(cluster, state)

    result = sioplay(cluster.settings, "cluster", "start", "--nodes", "1")
    assert result.returncode == 1 and "cannot be adopted" in result.stderr, result.stderr + result.stdout
    result = sioplay(cluster.settings, "cluster", "stop")
    assert result.returncode == 0, result.stderr
    assert "stopped 3 process(es) left by a dead supervisor" in result.stdout, result.stdout
    assert alive_refs(set(state.processes())) == []
    assert sioplay(cluster.settings, "cluster", "stop").stdout.startswith("no cluster is running")
    if damage == "corrupt":
        # Nothing of it runs now (the lock file says so): the next start sets the unreadable file aside.
        result = sioplay(cluster.settings, "cluster", "start", "--nodes", "1")
        assert result.returncode == 0, result.stderr + result.stdout
        assert path.with_name("state.json.unreadable").read_text() == '{"garbage":'


def _readable(cluster: RunningCluster) -> bool:
    try:
        return read_state(cluster.home) is not None
    except Exception:
        return False


async def test_start_adopts_what_a_dead_supervisor_left_running(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    before = cluster.state()
    client = SimClient(cluster.node_url(before.nodes[0]), "1", "Maths")
    await client.connect()
    sid = client.sid
    try:
        await asyncio.to_thread(_kill_supervisor, cluster)
        # A start with settings they do not run with is refused, and they go on serving as they were.
        other_port = cluster.settings.replace(public_port=cluster.settings.public_port + 1)
        result = await asyncio.to_thread(sioplay, other_port, "cluster", "start", "--nodes", "2")
        assert result.returncode == 1
        line = result.stderr.strip()
        assert f"public port {cluster.settings.public_port} (this start: {other_port.public_port})" in line, line
        assert "sioplay cluster stop" in line, line
        assert len(alive_refs(set(before.processes()))) == len(before.processes())

        # No --nodes: as many as the dead supervisor ran.
        result = await asyncio.to_thread(sioplay, cluster.settings, "cluster", "start")
        assert result.returncode == 0, result.stderr + result.stdout
        assert "adopted" in result.stdout, result.stdout
        after = await asyncio.to_thread(cluster.state)
        assert after.supervisor != before.supervisor and is_running(after)
        assert [node.process for node in after.nodes] == [node.process for node in before.nodes]
        assert after.redis == before.redis
        assert [node.status for node in after.nodes] == ["online", "online"]
        # Nothing was restarted: the client kept its connection, and the other node still sees it.
        assert client.connected and client.sid == sid
        assert not [event for event in client.events if event.name == DISCONNECT]
        assert await complete_maths_users(cluster, after.nodes[1]) == {"1"}

        # A node it adopted is supervised as its own: killed, it is restarted on its port.
        adopted = after.nodes[1]
        await asyncio.to_thread(_kill, adopted.process)
        restarted = await async_wait_until(
            lambda: _replaced_online(cluster, adopted.id, adopted.pid), 20, f"{adopted.id} restarted"
        )
        assert restarted.port == adopted.port and restarted.restarts == adopted.restarts + 1
        assert "an unknown code (adopted)" in (restarted.last_exit or ""), restarted
    finally:
        await client.disconnect()

    final = await asyncio.to_thread(cluster.stop)
    assert final.phase == "stopped"
    left = {*before.processes(), *after.processes(), *(await asyncio.to_thread(cluster.state)).processes()}
    assert alive_refs(left) == []


def _assert_status_names_the_orphans(cluster: RunningCluster, state: ClusterState) -> None:
    """`status` and `status --json` exit 3 and name every node and Redis of `state`, by pid."""
    result = sioplay(cluster.settings, "cluster", "status")
    assert result.returncode == ORPHANS_EXIT_CODE, result.stderr + result.stdout
    for node in state.nodes:
        assert f"{node.id} (pid {node.pid})" in result.stderr, result.stderr
    assert state.redis is not None and f"redis (pid {state.redis.pid})" in result.stderr, result.stderr

    result = sioplay(cluster.settings, "cluster", "status", "--json")
    assert result.returncode == ORPHANS_EXIT_CODE, result.stderr
    listed = {item["role"]: item["pid"] for item in json.loads(result.stdout)["orphans"]}
    assert listed == {**{node.id: node.pid for node in state.nodes}, "redis": state.redis.pid}


def _kill(ref: ProcessRef | None) -> None:
    assert ref is not None
    process = find(ref)
    assert process is not None
    process.kill()
    psutil.wait_procs([process], timeout=5)


def _replaced_online(cluster: RunningCluster, node_id: str, old_pid: int | None) -> NodeRecord | None:
    node = cluster.node(node_id)
    return node if node.pid not in (None, old_pid) and node.status == "online" else None
