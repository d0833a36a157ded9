"""`sioplay cluster` as a person runs it: real subprocesses, the embedded Redis, a fresh database."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, alive_refs, can_listen


def sioplay(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**settings.child_env(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sioplay", "--home", str(settings.home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_start_status_logs_stop(clusters: Clusters) -> None:
    settings = clusters.settings()
    cluster = clusters.track(settings)
    port = str(settings.public_port)

    started = sioplay(settings, "cluster", "start", "--nodes", "2", "--port", port, "--max-memory", "1GB")
    assert started.returncode == 0, started.stderr
    assert re.search(r"node-1\s.*\sonline\s", started.stdout) and re.search(r"node-2\s.*\sonline\s", started.stdout)
    assert f"http://localhost:{port}/ui/Maths?id_user=1" in started.stdout
    assert (settings.home / "sioplay.db").exists(), "the database was created and seeded on the way"
    cluster.state()

    status = sioplay(settings, "cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["running"] is True and body["public_port"] == settings.public_port
    assert body["redis"]["embedded"] is True and body["max_memory_bytes"] == 1024**3
    assert [(node["id"], node["status"], node["sockets"]) for node in body["nodes"]] == [
        ("node-1", "online", 0),
        ("node-2", "online", 0),
    ]
    for node in body["nodes"]:
        assert node["pid"] > 0 and node["port"] > 0 and node["rss_bytes"] > 0 and node["restarts"] == 0

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
    assert can_listen(settings.public_port)

    after = sioplay(settings, "cluster", "status")
    assert after.returncode == 1 and "no cluster is running" in after.stderr


def test_status_without_a_cluster(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["running"] is False
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "stop"])
    assert result.exit_code == 0 and "no cluster is running" in result.output
    result = runner.invoke(app, ["--home", str(tmp_path), "cluster", "logs"])
    assert result.exit_code == 1 and "no logs in" in result.output
