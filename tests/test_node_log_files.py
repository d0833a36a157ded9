"""Each supervised node writes its own log file: its lines outlive the supervisor, one timestamp each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil

from sioplay.cluster.logs import node_log_path
from sioplay.common.pids import find
from tests.cluster_fixtures import Clusters, alive_refs
from tests.test_cluster_recovery import sioplay

_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


def test_a_node_logs_to_its_file_after_its_supervisor_is_killed(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    state = cluster.state()
    supervisor = find(state.supervisor)
    assert supervisor is not None
    supervisor.kill()
    psutil.wait_procs([supervisor], timeout=5)

    first = state.nodes[0]
    ref = first.process
    node = find(ref) if ref is not None else None
    assert node is not None
    # The orphan logs its shutdown: nobody reads a pipe of it any more, and it neither blocks nor dies of it.
    node.terminate()
    node.wait(timeout=30)
    lines = node_log_path(cluster.home, first.id).read_text().splitlines()
    stopped = [line for line in lines if f"node {first.id} stopped" in line]
    assert len(stopped) == 1, lines[-10:]
    assert _STAMP.match(stopped[0]) and len(_STAMP.findall(stopped[0])) == 1, stopped[0]
    assert f" INFO {first.id} pid={first.pid} " in stopped[0], stopped[0]

    result = sioplay(cluster.settings, "cluster", "stop")
    assert result.returncode == 0, result.stderr
    assert alive_refs(set(state.processes())) == []


def test_output_that_is_not_logged_follows_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "node-1.log"
    script = (
        "import logging, sys; from pathlib import Path; from sioplay.log import configure_node_logging\n"
        f"configure_node_logging('node-1', 'INFO', Path({str(path)!r}), 300, 2)\n"
        "[logging.getLogger('sioplay.x').info('line %d', n) for n in range(20)]\n"
        "print('printed after the rotations', file=sys.stderr, flush=True)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30, stdout=subprocess.DEVNULL)
    assert sorted(found.name for found in tmp_path.iterdir()) == ["node-1.log", "node-1.log.1", "node-1.log.2"]
    current = path.read_text().splitlines()
    assert current[-1] == "printed after the rotations", current
    assert " INFO node-1 pid=" in current[0] and "sioplay.x: line " in current[0], current
