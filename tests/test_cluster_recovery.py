"""A cluster whose supervisor or state file is gone can still be seen and stopped: real processes throughout."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.cluster.recovery import ORPHANS_EXIT_CODE, lock_holder
from sioplay.common.pids import find
from sioplay.common.state import read_state, state_path
from sioplay.settings import Settings
from tests.cluster_fixtures import Clusters, RunningCluster, alive_refs
from tests.helpers import wait_until


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

    result = sioplay(cluster.settings, "cluster", "status")
    assert result.returncode == ORPHANS_EXIT_CODE, result.stderr + result.stdout
    for node in state.nodes:
        assert f"{node.id} (pid {node.pid})" in result.stderr, result.stderr
    assert state.redis is not None and f"redis (pid {state.redis.pid})" in result.stderr, result.stderr

    result = sioplay(cluster.settings, "cluster", "status", "--json")
    assert result.returncode == ORPHANS_EXIT_CODE, result.stderr
    listed = {item["role"]: item["pid"] for item in json.loads(result.stdout)["orphans"]}
    assert listed == {**{node.id: node.pid for node in state.nodes}, "redis": state.redis.pid}

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


def _readable(cluster: RunningCluster) -> bool:
    try:
        return read_state(cluster.home) is not None
    except Exception:
        return False
