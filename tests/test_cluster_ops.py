"""Operating a running cluster as a PM2 user does: progress, one node stopped and started, describe, monit, join."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

from rich.console import Console

from sioplay.client.sim import SimClient
from sioplay.cluster import progress
from tests.cli_fixtures import Output
from tests.cluster_fixtures import Clusters, RunningCluster
from tests.helpers import http_json, wait_until
from tests.test_cluster_cli import sioplay

_STEP = r"^\d\d:\d\d:\d\d  {node} +{step} +pid {pid}"


def _line_of(text: str, node: str, step: str, pid: str = r"\d+") -> int:
    """The index of the first line that reports `node` at `step`; fails if there is none."""
    pattern = re.compile(_STEP.format(node=re.escape(node), step=step, pid=pid))
    for index, line in enumerate(text.splitlines()):
        if pattern.match(line):
            return index
    raise AssertionError(f"no {step!r} step of {node} in:\n{text}")


def _table_line(text: str) -> int:
    return next(index for index, line in enumerate(text.splitlines()) if re.search(r"cluster \S+ · running", line))


def test_start_restart_scale_and_stop_report_each_nodes_steps_then_the_table(clusters: Clusters) -> None:
    settings = clusters.settings()
    cluster = clusters.track(settings)
    started = sioplay(settings, "cluster", "start", "--nodes", "2", "--port", str(settings.public_port))
    assert started.returncode == 0, started.stderr
    table = _table_line(started.stdout)
    for node in ("node-1", "node-2"):
        pid = str(cluster.node(node).pid)
        spawned, subscribed, healthy = (_line_of(started.stdout, node, step, pid) for step in progress.LAUNCH_STEPS)
        assert spawned < subscribed <= healthy < table, started.stdout
    assert "\x1b[" not in started.stdout, "a pipe gets plain lines, not a live screen"

    old = str(cluster.node("node-1").pid)
    restarted = sioplay(settings, "cluster", "restart", "--node", "node-1")
    assert restarted.returncode == 0, restarted.stderr
    new = str(cluster.node("node-1").pid)
    assert new != old
    steps = [_line_of(restarted.stdout, "node-1", step, pid) for step, pid in _replacement(old, new)]
    assert steps == sorted(steps) and steps[-1] < _table_line(restarted.stdout), restarted.stdout

    scaled = sioplay(settings, "cluster", "scale", "3")
    assert scaled.returncode == 0, scaled.stderr
    pid = str(cluster.node("node-3").pid)
    steps = [_line_of(scaled.stdout, "node-3", step, pid) for step in progress.LAUNCH_STEPS]
    assert steps == sorted(steps) and steps[-1] < _table_line(scaled.stdout), scaled.stdout

    pids = {node.id: str(node.pid) for node in cluster.state().nodes}
    stopped = sioplay(settings, "cluster", "stop")
    assert stopped.returncode == 0, stopped.stderr
    for node, pid in pids.items():
        assert _line_of(stopped.stdout, node, "draining", pid) < _line_of(stopped.stdout, node, "stopped", pid)
    assert stopped.stdout.rstrip().endswith("(3 nodes)"), stopped.stdout


def _replacement(old: str, new: str) -> list[tuple[str, str]]:
    return [("spawned", new), ("healthy", new), ("draining", old), ("stopped", old)]


def test_progress_on_a_terminal_is_one_live_table(tmp_path: Path) -> None:
    console = Console(force_terminal=True, record=True, width=100)
    log = progress.ProgressLog(tmp_path)
    log.clear()
    with progress.shown(tmp_path, console, "starting 2 nodes"):
        for node, pid in (("node-1", 101), ("node-2", 102)):
            for step in progress.LAUNCH_STEPS:
                log.note(node, step, pid)
    text = console.export_text()
    assert "starting 2 nodes" in text
    rows = [line for line in text.splitlines() if re.search(r"node-\d .* 10\d", line)]
    assert any("node-1" in row and "healthy" in row for row in rows), text
    assert any("node-2" in row and "healthy" in row for row in rows), text


def test_a_node_stopped_on_request_stays_stopped_until_started(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    settings = cluster.settings
    stopped = sioplay(settings, "cluster", "stop", "--node", "node-2")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped node-2" in stopped.stdout and _line_of(stopped.stdout, "node-2", "stopped") >= 0
    assert re.search(r"node-2 +│ +- │ +- │ stopped", stopped.stdout), stopped.stdout
    assert cluster.node("node-2").pid is None

    # A rolling restart of "every node" passes it by: the supervisor does not bring it back by itself.
    restarted = sioplay(settings, "cluster", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "restarted node-1\n" in restarted.stdout, restarted.stdout
    status = json.loads(sioplay(settings, "cluster", "status", "--json").stdout)
    assert [(node["id"], node["status"]) for node in status["nodes"]] == [("node-1", "online"), ("node-2", "stopped")]
    refused = sioplay(settings, "cluster", "restart", "--node", "node-2")
    assert refused.returncode == 1 and "node-2 is stopped" in refused.stderr, refused.stderr

    # The full id a multi-host cluster gives its nodes names the same node.
    started = sioplay(settings, "cluster", "start", "--node", "host-a/node-2")
    assert started.returncode == 0, started.stderr
    assert "started node-2" in started.stdout and _line_of(started.stdout, "node-2", "healthy") >= 0
    assert cluster.node("node-2").status == "online"
    unknown = sioplay(settings, "cluster", "stop", "--node", "node-9")
    assert unknown.returncode == 1 and "no node 'node-9'; the nodes are node-1, node-2" in unknown.stderr


async def test_describe_shows_one_node_in_full(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    node = cluster.node("node-2")
    mary = SimClient(cluster.node_url(node), "2", "Maths")
    await mary.connect()
    try:
        described = sioplay(cluster.settings, "cluster", "describe", "node-2", "--json")
    finally:
        await mary.disconnect()
    assert described.returncode == 0, described.stderr
    body = json.loads(described.stdout)
    assert body["id"] == "node-2" and body["pid"] == node.pid and body["port"] == node.port
    assert body["public_port"] == cluster.settings.public_port and body["status"] == "online"
    command = f"node run --node-id node-2 --port {node.port} --public-port {cluster.settings.public_port}"
    log_file = cluster.home / "logs" / "node-2.log"
    assert " ".join(body["command"]).endswith(f"{command} --log-file {log_file}"), body["command"]
    assert body["sockets"] == 1 and body["rss_bytes"] > 10_000_000
    assert body["logs"][0] == str(cluster.home / "logs" / "node-2.log")
    assert any(f"pid {node.pid} started on port {node.port}" in event["event"] for event in body["history"])

    sioplay(cluster.settings, "cluster", "restart", "--node", "node-2")
    table = sioplay(cluster.settings, "cluster", "describe", "node-2")
    assert table.returncode == 0, table.stderr
    assert re.search(r"restarts +│ 1 ", table.stdout), table.stdout
    assert f"pid {node.pid} stopped (code 0)" in table.stdout, "the reason of each restart, from the supervisor"
    missing = sioplay(cluster.settings, "cluster", "describe", "node-7")
    assert missing.returncode == 1 and "no node 'node-7'" in missing.stderr


def test_monit_is_one_live_screen_and_ctrl_c_restores_the_terminal(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    screen = _Terminal(cluster, "cluster", "monit")
    try:
        wait_until(lambda: "Ctrl-C to quit" in screen.text and "node-2" in screen.text, 20, "the monit screen")
        assert "\x1b[?1049h" in screen.raw, "it draws on the alternate screen"
        assert re.search(r"node-1 +\| ", screen.text), "the merged log tail is on the screen"
        code = screen.interrupt()
    finally:
        screen.close()
    assert code == 0, screen.text
    assert screen.raw.rindex("\x1b[?1049l") > screen.raw.rindex("\x1b[?1049h"), "the normal screen is back"
    assert screen.raw.rindex("\x1b[?25h") > screen.raw.rindex("\x1b[?25l"), "the cursor is shown again"
    assert "Traceback" not in screen.text


class _Terminal:
    """`python -m sioplay ...` on a pseudo-terminal of 120x40, its output kept raw."""

    def __init__(self, cluster: RunningCluster, *args: str) -> None:
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        env = {**cluster.settings.child_env(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sioplay", "--home", str(cluster.home), *args],
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.chunks.append(data)
            elif self.process.poll() is not None:
                return

    @property
    def raw(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    @property
    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.raw)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(10)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)


async def test_join_reconnects_through_a_rolling_restart_and_says_where_it_lands(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=2)
    mary = SimClient(cluster.public_url, "2", "Maths")
    await mary.connect()
    john = Output(cluster.settings, "join", "Maths", "--user", "1", "--for", "120", "--url", cluster.public_url)
    try:
        first = john.wait_printed(r"joined Maths as 1 \(John\) on (node-\d), socket (\S+)", 15)
        mary_node = mary.handshake["node"] if mary.handshake else None
        john.wait_printed(rf"member +{mary_node} +2 \(Mary\) +socket {mary.sid}", 10)
        before = {node.id: node.pid for node in cluster.state().nodes}

        restarted = sioplay(cluster.settings, "cluster", "restart")
        assert restarted.returncode == 0, restarted.stderr
        john.wait_printed(rf"disconnected from {first[1]} \(.*\); reconnecting in", 15)
        after = {node.id: node.pid for node in cluster.state().nodes}
        assert all(after[node] != before[node] for node in before), "every node was replaced"

        def landed() -> re.Match[str] | None:
            found = list(
                re.finditer(r"rejoined Maths as 1 \(John\) on (node-\d), socket (\S+) \(pid (\d+)\)", john.text)
            )
            return found[-1] if found and int(found[-1][3]) in after.values() else None

        last = wait_until(landed, 20, f"john back on a new process (so far: {john.text})")
        roster = http_json(cluster.public_url + "/rooms/Maths")[1]
        assert {user["id_socket"]: user["node"] for user in roster["users"]}[last[2]] == last[1]
        assert "error" not in john.stderr and john.process.poll() is None, john.stderr
    finally:
        await mary.disconnect()
        john.stop()
