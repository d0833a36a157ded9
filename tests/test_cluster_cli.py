"""`sioplay cluster` as a person runs it: real subprocesses, the embedded Redis, a fresh database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.cluster.launcher import supervisor_output
from sioplay.common.ports import port_is_free
from sioplay.common.state import ClusterState, read_state
from sioplay.settings import Settings
from tests.cli_fixtures import Output
from tests.cluster_fixtures import Clusters, alive_refs
from tests.helpers import wait_until


def sioplay(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**settings.child_env(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sioplay", "--home", str(settings.home), *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_start_status_logs_stop(clusters: Clusters) -> None:
    settings = clusters.settings()
    cluster = clusters.track(settings)
    port = str(settings.public_port)
    began = time.time()

    started = sioplay(settings, "cluster", "start", "--nodes", "2", "--port", port, "--max-memory", "1GB")
    assert started.returncode == 0, started.stderr
    assert re.search(r"node-1\s.*\sonline\s", started.stdout) and re.search(r"node-2\s.*\sonline\s", started.stdout)
    assert f"http://localhost:{port}/ui/Maths?id_user=1" in started.stdout
    assert (settings.home / "sioplay.db").exists(), "the database was created and seeded on the way"
    state = cluster.state()

    status = sioplay(settings, "cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["running"] is True and body["max_memory_bytes"] == 1024**3
    assert_status_json(body, settings, state, uptime_max=time.time() - began)

    assert_second_start_refused(settings, state)
    assert_watch_refreshes_until_ctrl_c(settings)

    logs = sioplay(settings, "cluster", "logs", "--lines", "20")
    assert logs.returncode == 0, logs.stderr
    for source in ("node-1", "node-2", "supervisor"):
        assert re.search(rf"^\d\d:\d\d:\d\d {source} +\| \S", logs.stdout, re.MULTILINE), logs.stdout
    only_2 = sioplay(settings, "cluster", "logs", "--node", "node-2")
    assert "node-2" in only_2.stdout and "node-1 " not in only_2.stdout

    stopped = sioplay(settings, "cluster", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped cluster" in stopped.stdout
    assert alive_refs(cluster.seen) == []
    assert port_is_free(settings.public_port)

    after = sioplay(settings, "cluster", "status")
    assert after.returncode == 1 and "no cluster is running" in after.stderr


def assert_status_json(body: dict, settings: Settings, state: ClusterState, uptime_max: float) -> None:
    """Every field of `status --json` that scripts rely on, with the values of this cluster."""
    assert body["cluster"] == settings.cluster and body["public_port"] == settings.public_port
    assert state.redis is not None and state.redis_url is not None
    assert body["redis_url"] == state.redis_url and body["redis_url"].startswith("redis://127.0.0.1:")
    assert body["redis"] == {
        "embedded": True,
        "pid": state.redis.pid,
        "binary": state.redis_binary,
        "version": state.redis_version,
        "authenticated": True,
        "user": "sioplay-node",
        "supervision": {
            "status": "online",
            "restarts": 0,
            "last_exit": None,
            "reason": None,
            "started_at": body["redis"]["supervision"]["started_at"],
        },
    }
    assert state.redis_binary and state.redis_version
    assert body["db_url"] == f"sqlite+aiosqlite:///{(settings.home / 'sioplay.db').resolve()}"
    fields = {"id", "pid", "port", "status", "restarts", "uptime_s", "cpu_percent", "rss_bytes", "sockets"}
    assert len(body["nodes"]) == len(state.nodes)
    for node, record in zip(body["nodes"], state.nodes, strict=True):
        assert fields <= set(node), node
        assert (node["id"], node["pid"], node["port"]) == (record.id, record.pid, record.port)
        assert record.process is not None and alive_refs({record.process}) == [record.process]
        assert (node["status"], node["restarts"], node["sockets"]) == ("online", 0, 0)
        assert 0 <= node["uptime_s"] <= uptime_max, node
        assert 0.0 <= node["cpu_percent"] <= 100.0 * (psutil.cpu_count() or 1), node
        assert 10 * 2**20 < node["rss_bytes"] < 2**30, node
    ports = [node["port"] for node in body["nodes"]]
    assert len(set(ports)) == len(ports) and settings.public_port not in ports


def assert_second_start_refused(settings: Settings, state: ClusterState) -> None:
    """`cluster start` on a home whose cluster runs: one clear line, and nothing started or rewritten."""
    output = supervisor_output(settings.home)
    before = (output.read_bytes(), output.stat().st_mtime_ns)
    again = sioplay(settings, "cluster", "start", "--nodes", "2", "--port", str(settings.public_port))
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        (
            f"error: a cluster is already running from {settings.home} (supervisor pid {state.supervisor.pid}); "
            f"'sioplay --home {settings.home} cluster stop' stops it"
        )
    ]
    assert (output.read_bytes(), output.stat().st_mtime_ns) == before, "no second supervisor was spawned"
    now = read_state(settings.home)
    assert now is not None and now.supervisor == state.supervisor
    assert [node.process for node in now.nodes] == [node.process for node in state.nodes]


def assert_watch_refreshes_until_ctrl_c(settings: Settings) -> None:
    """`status --watch` redraws the table (on a terminal) until Ctrl-C, then exits cleanly."""
    watch = Output(settings, "cluster", "status", "--watch", env={"TTY_COMPATIBLE": "1"}, columns=200)
    try:
        # Two tables: the first one and at least one refresh.
        watch.wait_printed(r"node-2\s.*\sonline\s(?:.|\n)*node-2\s.*\sonline\s", 20)
        code, stderr = watch.interrupt()
        assert code == 0, stderr
    finally:
        watch.stop()
    assert watch.stderr == ""
    assert re.search(r"node\s.*\spid\s.*\sstatus\s.*\ssockets", watch.text), watch.text
    assert re.search(r"node-1[\s│]+\d+[\s│]+\d+[\s│]+online\s", watch.text), watch.text


def test_foreground_stops_on_ctrl_c_and_a_second_ctrl_c_forces(clusters: Clusters) -> None:
    # Far beyond the test's patience: only the second Ctrl-C can cut the wait for a stuck node.
    settings = clusters.settings(stop_timeout_s=30.0, health_timeout_s=60.0)
    cluster = clusters.track(settings)
    supervisor = Output(settings, "cluster", "start", "--foreground", "--nodes", "2", columns=200)
    try:
        supervisor.wait_printed(r"node-2\s.*\sonline\s", 60)
        state = cluster.state()
        assert state.phase == "running" and state.supervisor.pid == supervisor.pid
        node_1, node_2 = state.nodes
        assert node_1.process is not None and node_2.pid is not None
        os.kill(node_2.pid, signal.SIGSTOP)  # deaf to SIGTERM from now on

        os.kill(supervisor.pid, signal.SIGINT)
        wait_until(lambda: alive_refs({node_1.process}) == [], 15, "node-1 to drain and exit on the first Ctrl-C")
        assert supervisor.process.poll() is None, "it waits for node-2"
        forced = time.monotonic()
        os.kill(supervisor.pid, signal.SIGINT)
        code, stderr = supervisor.wait(15)
        assert code == 0, stderr
        assert time.monotonic() - forced < 10
    finally:
        supervisor.stop()

    assert "Traceback" not in supervisor.stderr, supervisor.stderr
    for source, text in (("node-1", r"\S"), ("supervisor", "SIGINT: stopping"), ("supervisor", "second SIGINT")):
        assert re.search(rf"^\d\d:\d\d:\d\d {source} +\| {text}", supervisor.text, re.MULTILINE), supervisor.text
    final = read_state(settings.home)
    assert final is not None and final.phase == "stopped" and final.processes() == []
    assert f"pid {node_1.pid} stopped (code 0)" in (settings.home / "logs" / "node-1.log").read_text()
    assert f"pid {node_2.pid} stopped (signal SIGKILL)" in (settings.home / "logs" / "node-2.log").read_text()
    assert alive_refs(cluster.seen) == []
    assert port_is_free(settings.public_port)


def test_status_without_a_cluster(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["running"] is False
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "stop"])
    assert result.exit_code == 0 and "no cluster is running" in result.output
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "logs"])
    assert result.exit_code == 1 and "no logs in" in result.output
