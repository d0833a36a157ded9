"""`sioplay cluster logs` options, on log files as the supervisor, the nodes and Redis write them."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.cluster.logs import node_log_path, redis_log_path
from sioplay.common.pids import ProcessRef
from sioplay.common.state import ClusterState, NodeRecord, write_state
from tests.cluster_fixtures import Clusters
from tests.helpers import wait_until
from tests.log_files import LogFile


def _logs(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--home", str(home), "cluster", "logs", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _write(home: Path, node_id: str, *lines: tuple[float, str]) -> None:
    log_file = LogFile(node_log_path(home, node_id), 1 << 20, 2)
    for at, text in lines:
        log_file.write(text, at=at)
    log_file.close()


def _home_with_two_nodes_and_a_removed_one(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    _write(home, "node-1", (100.0, "INFO sioplay.node: one up"), (103.0, "ERROR sioplay.node: one broke"))
    _write(home, "node-2", (101.0, "WARNING sioplay.node: two slow"))
    _write(home, "node-3", (102.0, "INFO sioplay.node: three, scaled away"))
    nodes = [NodeRecord("node-1", "online"), NodeRecord("node-2", "online")]
    state = ClusterState("t", "stopped", str(home), "127.0.0.1", 1, None, "sqlite://", ProcessRef(1, 0.0), 0.0)
    state.nodes = nodes
    write_state(home, state)
    return home


def test_lines_must_not_be_negative(tmp_path: Path) -> None:
    home = _home_with_two_nodes_and_a_removed_one(tmp_path)
    code, output = _logs(home, "--lines", "-5")
    assert code == 1 and "--lines must be 0 or more" in output, output


def test_merged_in_time_order_without_removed_nodes_unless_all(tmp_path: Path) -> None:
    home = _home_with_two_nodes_and_a_removed_one(tmp_path)
    code, output = _logs(home)
    assert code == 0, output
    texts = [line.split("| ", 1)[1] for line in output.splitlines()]
    assert texts == ["INFO sioplay.node: one up", "WARNING sioplay.node: two slow", "ERROR sioplay.node: one broke"]
    code, output = _logs(home, "--all")
    assert code == 0 and "three, scaled away" in output, output


def test_level_and_json(tmp_path: Path) -> None:
    home = _home_with_two_nodes_and_a_removed_one(tmp_path)
    code, output = _logs(home, "--level", "warning", "--json")
    assert code == 0, output
    records = [json.loads(line) for line in output.splitlines()]
    assert [(record["source"], record["text"]) for record in records] == [
        ("node-2", "WARNING sioplay.node: two slow"),
        ("node-1", "ERROR sioplay.node: one broke"),
    ]
    code, output = _logs(home, "--level", "LOUD")
    assert code == 1 and "unknown --level" in output, output


def test_redis_log_and_flush(tmp_path: Path) -> None:
    home = _home_with_two_nodes_and_a_removed_one(tmp_path)
    redis_log = redis_log_path(home)
    redis_log.parent.mkdir(parents=True)
    redis_log.write_text("1:M 02 Dec 2026 14:25:35.123 * Ready to accept connections tcp\n")
    code, output = _logs(home, "--node", "redis")
    assert code == 0 and "Ready to accept connections" in output and "redis" in output, output

    code, output = _logs(home, "flush")
    assert code == 0, output
    assert node_log_path(home, "node-1").stat().st_size == 0 and redis_log.stat().st_size == 0
    code, output = _logs(home, "--all")
    assert code == 0 and output.strip() == "", output
    code, output = _logs(home, "purge")
    assert code == 1 and "only one is 'flush'" in output, output


def test_a_restarted_node_is_told_apart_by_pid(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=1)
    old = cluster.node("node-1")
    assert old.pid is not None
    process = psutil.Process(old.pid)
    process.kill()
    new_pid = wait_until(
        lambda: (
            (pid := cluster.node("node-1").pid) not in (None, old.pid)
            and cluster.node("node-1").status == "online"
            and pid
        ),
        20,
        "node-1 restarted",
    )
    text = node_log_path(cluster.home, "node-1").read_text()
    assert f"pid={old.pid} " in text and f"pid={new_pid} " in text, text
    assert f"[supervisor] pid {new_pid} started" in text, text
    code, output = _logs(cluster.home, "--node", "node-1", "--lines", "200")
    assert code == 0 and f"pid={new_pid} " in output, output
