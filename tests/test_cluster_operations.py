"""Requests to a running supervisor, a dead supervisor, and the memory ceiling, with real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.cluster import control
from sioplay.cluster.control import Request
from sioplay.cluster.preflight import clean_up_after
from sioplay.common.pids import ProcessRef
from sioplay.common.state import ClusterState, NodeRecord, read_state
from tests.cluster_fixtures import Clusters, alive_refs
from tests.helpers import wait_until

runner = CliRunner()


def test_restart_one_node_then_scale_up_and_down(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    node_1, node_2 = cluster.state().nodes
    home = ["--home", str(cluster.home)]

    result = runner.invoke(app, [*home, "cluster", "restart", "--node", "node-2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "restarted node-2" in result.output
    after = cluster.state()
    assert after.node("node-1").pid == node_1.pid and after.node("node-1").restarts == 0
    assert after.node("node-2").pid != node_2.pid and after.node("node-2").restarts == 1
    assert after.node("node-2").status == "online"
    assert alive_refs({node_2.process}) == [], "the old node-2 was stopped"

    result = runner.invoke(app, [*home, "cluster", "restart", "--node", "node-9"])
    assert result.exit_code == 1 and "no node 'node-9'" in result.output

    result = runner.invoke(app, [*home, "cluster", "scale", "3"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert [(node.id, node.status) for node in cluster.state().nodes] == [
        ("node-1", "online"),
        ("node-2", "online"),
        ("node-3", "online"),
    ]
    removed = {node.process for node in cluster.state().nodes[1:]}

    reply = control.ask(cluster.home, cluster.state(), Request("scale", nodes=1), timeout=30)
    assert reply.ok and reply.message == "scaled from 3 to 1 node"
    assert [node.id for node in cluster.state().nodes] == ["node-1"]
    assert alive_refs(removed) == []


# Stand-ins for a node that takes a while to drain and a Redis, which note when SIGTERM made them exit.
STAND_IN = """
import signal, sys, time
def stop(*_):
    time.sleep(float(sys.argv[2]))
    with open(sys.argv[1], "a") as file:
        file.write(sys.argv[3] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    signal.pause()
"""


def test_clean_up_after_a_dead_supervisor_stops_the_nodes_before_redis(tmp_path: Path) -> None:
    exits = tmp_path / "exits"
    stand_ins = [
        subprocess.Popen([sys.executable, "-c", STAND_IN, str(exits), drain, name], stdout=subprocess.PIPE, text=True)
        for name, drain in (("node", "0.3"), ("redis", "0"))
    ]
    try:
        for process in stand_ins:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        node, redis = (ProcessRef.of(process.pid) for process in stand_ins)
        state = ClusterState(
            cluster="sioplay",
            phase="running",
            home=str(tmp_path),
            host="127.0.0.1",
            public_port=5009,
            redis_url="redis://127.0.0.1:6380/0",
            db_url="sqlite+aiosqlite:///x.db",
            supervisor=ProcessRef(2**22 + 12345, 1.0),  # dead
            started_at=1.0,
            redis=redis,
            nodes=[NodeRecord("node-1", "online", pid=node.pid, create_time=node.create_time, port=5010)],
        )

        assert clean_up_after(tmp_path, state, timeout=5.0) == [node, redis]
        assert exits.read_text().split() == ["node", "redis"], "Redis was stopped while a node still drained"
        after = read_state(tmp_path)
        assert after is not None and after.phase == "failed" and "died" in (after.error or "")
        assert after.processes() == [] and after.node("node-1").status == "stopped"
    finally:
        for process in stand_ins:
            process.kill()
            process.wait(5)


def test_a_node_above_the_memory_ceiling_is_replaced_gracefully(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=1, max_memory_bytes=1024 * 1024)
    first = cluster.node("node-1")
    replaced = wait_until(
        lambda: (node := cluster.node("node-1")).restarts >= 1 and node.status == "online" and node,
        15,
        "node-1 to be replaced for its memory",
    )
    assert replaced.pid != first.pid and replaced.last_exit is None, "a replacement, not a crash"
    log = (cluster.home / "logs" / "supervisor.log").read_text()
    assert "above 1.0 MiB: restarting it" in log


def test_requests_need_a_running_cluster(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "restart"])
    assert result.exit_code == 1 and "no cluster is running" in result.output
    assert read_state(tmp_path) is None
