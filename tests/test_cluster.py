"""The supervisor with real processes: a real redis-server, real nodes on one public port, real clients."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import re
import signal
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.client.sim import SimClient
from sioplay.cluster import control
from sioplay.cluster.control import Request
from sioplay.cluster.launcher import start_detached
from sioplay.cluster.status import StatusCollector
from sioplay.common.health import is_healthy
from sioplay.common.ports import port_is_free
from sioplay.common.state import read_state
from sioplay.errors import ClusterError, PortInUseError
from tests.cluster_fixtures import Clusters, RunningCluster, alive_refs, free_ports
from tests.helpers import async_http_json, async_wait_until, http_json

cli = CliRunner()


async def roster(port: int, room: str = "Maths") -> dict:
    status, body, _ = await async_http_json(f"http://127.0.0.1:{port}/rooms/{room}", timeout_s=3.0)
    assert status == 200, body
    return body


async def roster_complete_everywhere(cluster: RunningCluster, sockets: int) -> bool:
    for node in cluster.state().nodes:
        body = await roster(node.port)
        if not (body["complete"] and body["sockets"] == sockets):
            return False
    return True


async def disconnect_all(clients: list[SimClient]) -> None:
    await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)


async def test_three_nodes_share_the_public_port_and_stop_leaves_nothing(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=3)
    state = cluster.state()
    assert [node.id for node in state.nodes] == ["node-1", "node-2", "node-3"]
    assert {node.status for node in state.nodes} == {"online"}
    ports = [node.port for node in state.nodes]
    assert len(set(ports)) == 3 and state.public_port not in ports
    status = StatusCollector().collect(state)
    assert [(node["pid"], node["sockets"]) for node in status["nodes"]] == [(node.pid, 0) for node in state.nodes]

    clients = [SimClient(cluster.public_url, str(index % 10 + 1), "Maths") for index in range(30)]
    try:
        handshakes = await asyncio.gather(*(client.connect() for client in clients))
        landed = collections.Counter(handshake["node"] for handshake in handshakes)
        assert len(landed) > 1, f"the kernel sent every connection to one node: {landed}"
        for node in state.nodes:
            body = await roster(node.port)
            assert body["complete"] is True and body["sockets"] == 30, body
    finally:
        await disconnect_all(clients)

    final = cluster.stop()
    assert final.phase == "stopped"
    assert {node.status for node in final.nodes} == {"stopped"} and final.processes() == []
    assert alive_refs(cluster.seen) == []
    redis_port = int(state.redis_url.rsplit(":", 1)[1].split("/")[0])
    for port in [state.public_port, *ports, redis_port]:
        assert port_is_free(port), f"port {port} still taken"


async def test_a_killed_node_is_restarted_and_the_roster_heals(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    node_1, node_2 = cluster.state().nodes
    client = SimClient(f"http://127.0.0.1:{node_2.port}", "1", "Maths")
    try:
        await client.connect()
        os.kill(node_1.pid, signal.SIGKILL)
        back = await async_wait_until(
            lambda: (node := cluster.node("node-1")).status == "online" and node.pid != node_1.pid and node,
            10,
            "node-1 to be back online",
        )
        assert back.restarts == 1 and back.last_exit == "signal SIGKILL"
        assert back.port == node_1.port, "a restarted node keeps its own port"
        await async_wait_until(lambda: roster_complete_everywhere(cluster, 1), 10, "a complete roster from both nodes")
    finally:
        await client.disconnect()


def test_a_node_that_fails_at_start_ends_errored_and_start_says_why(clusters: Clusters) -> None:
    # Three starts of a node that fails after its imports: time enough for them on a loaded machine.
    with pytest.raises(ClusterError) as failed:
        clusters.start(nodes=1, log_level="NOPE", start_timeout_s=60.0)
    message = str(failed.value)
    assert "errored" in message and "code 1" in message and "3 crashes" in message and "NOPE" in message
    state = read_state(clusters.clusters[-1].home)
    assert state is not None and state.phase == "failed"
    errored = [node for node in state.nodes if node.status == "errored"]
    assert errored and all(node.restarts == 2 and node.last_exit == "code 1" for node in errored)
    assert state.processes() == []


def test_a_taken_public_port_is_refused_naming_its_owner(clusters: Clusters) -> None:
    settings = clusters.settings()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.public_port))
        taken.listen()
        cluster = clusters.track(settings)
        with pytest.raises(PortInUseError) as refused:
            start_detached(settings, 2)
    assert f"public port {settings.public_port} is already in use by" in str(refused.value)
    assert f"pid {os.getpid()}" in str(refused.value)
    assert read_state(cluster.home) is None, "nothing was started"


def status_json(cluster: RunningCluster) -> dict:
    result = cli.invoke(app, ["--home", str(cluster.home), "cluster", "status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def status_table(cluster: RunningCluster) -> str:
    """The status table with its lines joined, so that a wrapped reason still reads as one."""
    result = cli.invoke(app, ["--home", str(cluster.home), "cluster", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def listens(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    sock.listen()
    return True


async def test_crashes_while_running_then_a_stuck_node_at_stop(clusters: Clusters) -> None:
    cluster = clusters.start(
        nodes=2,
        node_port_base=free_ports(2),  # a restarted node-1 comes back on its own port
        # Long enough to see waiting-restart in status; every crash waits as long.
        restart_backoff_initial_s=2.0,
        restart_backoff_max_s=2.0,
        restart_crash_window_s=60.0,
        stop_timeout_s=1.0,
        # node-2, SIGSTOPped below, is to be killed by the stop, not for its silence.
        health_timeout_s=60.0,
    )
    node_1, node_2 = cluster.state().nodes
    client = SimClient(cluster.node_url(node_2), "1", "Maths")
    try:
        await client.connect()
        assert [node["sockets"] for node in status_json(cluster)["nodes"]] == [0, 1]
    finally:
        await client.disconnect()

    # A crash: node-1 waits out its back-off as waiting-restart, then is back.
    os.kill(node_1.pid, signal.SIGKILL)
    killed = time.monotonic()
    waiting = await async_wait_until(
        lambda: (node := status_json(cluster)["nodes"][0])["status"] == "waiting-restart" and node,
        2.0,
        "status to show node-1 waiting-restart",
    )
    assert (waiting["pid"], waiting["restarts"], waiting["last_exit"]) == (None, 0, "signal SIGKILL")
    assert waiting["reason"] == "exited with signal SIGKILL; crash 1 in a row, restarting in 2 s"
    back = await async_wait_until(
        lambda: (node := cluster.node("node-1")).status == "online" and node, 15, "node-1 to be back online"
    )
    assert time.monotonic() - killed >= 2.0, "restarted before its back-off"
    assert (back.restarts, back.port) == (1, node_1.port) and back.pid != node_1.pid

    # Crashes while the cluster runs: killed again, then its port is taken, so that every restart fails.
    with socket.socket() as squatter:
        # TIME_WAIT left on the port by the killed node's connections must not stop the squatter.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert back.pid is not None and back.port is not None
        os.kill(back.pid, signal.SIGKILL)
        await async_wait_until(lambda: listens(squatter, back.port), 1.5, "node-1's port to be free to take")
        errored = await async_wait_until(
            lambda: (node := cluster.node("node-1")).status == "errored" and node, 15, "node-1 to be errored"
        )
    assert (errored.pid, errored.restarts, errored.last_exit) == (None, 2, "code 1")
    assert errored.reason is not None and errored.reason.startswith(
        "exited with code 1, 3 crashes within 60 s; left down. Last output:"
    )
    assert any("address already in use" in line for line in errored.log_tail), errored.log_tail
    table = status_table(cluster)
    assert re.search(r"node-1 │ - │ - │ errored │ 2 │", table), table
    assert f"node-1: {errored.reason}" in table and "address already in use" in table.split(errored.reason)[1]
    body = status_json(cluster)
    assert body["phase"] == "running"
    assert {key: body["nodes"][0][key] for key in ("status", "last_exit", "reason", "log_tail")} == {
        "status": "errored",
        "last_exit": "code 1",
        "reason": errored.reason,
        "log_tail": errored.log_tail,
    }
    assert (body["nodes"][1]["status"], body["nodes"][1]["pid"]) == ("online", node_2.pid)
    assert (await async_http_json(cluster.public_url + "/healthz"))[0] == 200, "node-2 still serves the public port"

    # A node that does not act on SIGTERM (stopped by SIGSTOP) is killed at the stop timeout.
    assert node_2.pid is not None
    os.kill(node_2.pid, signal.SIGSTOP)
    stopping = time.monotonic()
    final = await asyncio.to_thread(cluster.stop)
    assert 1.0 <= time.monotonic() - stopping < 10.0
    assert final.phase == "stopped" and final.processes() == []
    assert [(node.id, node.status) for node in final.nodes] == [("node-1", "errored"), ("node-2", "stopped")]
    supervisor_log = (cluster.home / "logs" / "supervisor.log").read_text()
    assert f"node-2 (pid {node_2.pid}) did not stop in time: killing it" in supervisor_log
    node_2_log = (cluster.home / "logs" / "node-2.log").read_text()
    assert f"[supervisor] pid {node_2.pid} stopped (signal SIGKILL)" in node_2_log
    assert alive_refs(cluster.seen) == []


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    processes: int  # node processes the state listed, replacements and draining ones included
    healthy: frozenset[int]  # the pids of those healthy (`is_healthy`) on their own port
    problem: str | None = None  # why the public port did not answer 200, or why the sample failed


class HealthWatch:
    """Samples, in a thread, every node process the state lists (own port) and the public port.

    A sample that raises is kept as a failed sample: the thread never dies silently.
    """

    def __init__(self, cluster: RunningCluster) -> None:
        self.cluster = cluster
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the sampling thread is stuck"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception as exc:
                self.samples.append(Sample(0, frozenset(), f"sampling failed: {exc!r}"))
            self._stop.wait(0.05)

    def _sample(self) -> Sample:
        state = read_state(self.cluster.home)
        if state is None:
            raise AssertionError("no state file")
        targets = {node.pid: node.port for node in state.nodes if node.pid and node.port}
        targets.update({process.pid: process.port for process in state.transient})
        healthy = frozenset(pid for pid, port in targets.items() if self._answers(port, pid))
        try:
            status, _, _ = http_json(self.cluster.public_url + "/healthz", timeout_s=2.0)
        except OSError as exc:
            return Sample(len(targets), healthy, f"public port: {exc!r}")
        return Sample(len(targets), healthy, None if status == 200 else f"public port: status {status}")

    @staticmethod
    def _answers(port: int, pid: int) -> bool:
        try:
            status, body, _ = http_json(f"http://127.0.0.1:{port}/healthz", timeout_s=1.0)
        except (OSError, ValueError):
            return False
        return status == 200 and is_healthy(body, pid)


async def test_rolling_restart_keeps_n_minus_1_nodes_serving(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=3)
    before = {node.id: node.pid for node in cluster.state().nodes}
    # A draining node closes its connections, so clients reconnect by themselves, to another node.
    clients = [SimClient(cluster.public_url, str(index + 1), "Maths", reconnection=True) for index in range(9)]
    try:
        first = {id(client): (await client.connect())["procid"] for client in clients}
        state = cluster.state()
        with HealthWatch(cluster) as watch:
            reply = await asyncio.to_thread(control.ask, cluster.home, state, Request("restart"), 60.0)
        assert reply.ok, reply.message
        samples = watch.samples
        assert len(samples) >= 20, f"only {len(samples)} samples"
        bad = [sample for sample in samples if sample.problem or len(sample.healthy) < 2]
        assert bad == [], f"{len(bad)} of {len(samples)} samples below 2 healthy nodes or failed: {bad[:5]}"
        after = cluster.state().nodes
        assert any(sample.processes > 3 for sample in samples), "no sample saw a replacement"
        seen = frozenset().union(*(sample.healthy for sample in samples))
        assert set(before.values()) | {node.pid for node in after} <= seen, "the samples did not span the restart"
        assert all(node.status == "online" and node.restarts == 1 and node.pid != before[node.id] for node in after)
        current = {node.pid for node in after}
        await async_wait_until(
            lambda: all(c.connected and c.handshake and c.handshake["procid"] in current for c in clients),
            20,
            "every client reconnected to a new process",
        )
        assert all(client.handshake["procid"] != first[id(client)] for client in clients)
        await async_wait_until(
            lambda: roster_complete_everywhere(cluster, 9), 10, "a complete roster of 9 from every node"
        )
    finally:
        await disconnect_all(clients)
