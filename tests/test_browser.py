"""The page as a person sees it, in the system's headless Chromium driven by Playwright.

The cluster is the one a person starts: `sioplay cluster start --nodes 4` in a
state directory of the test's own, stopped with `sioplay cluster stop`. The
tests share it and keep out of each other's way by room and user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sioplay.cluster.pids import ProcessRef, find
from sioplay.cluster.ports import free_port
from sioplay.cluster.state import ClusterState, read_state

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's own browser download is not reachable here; the flags are what headless Chromium needs as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
EVENT_DEADLINE_MS = 2000
# A suspended node must stay expected (heartbeats: 10 s of silence) and alive to the supervisor (health:
# 60 s), while the roster gives up on it after 0.5 s.
CLUSTER_SETTINGS = {
    "SIOPLAY_HEARTBEAT_MISSES": "10",
    "SIOPLAY_HEALTH_TIMEOUT_S": "60",
    "SIOPLAY_ROSTER_TIMEOUT_S": "0.5",
    "SIOPLAY_RESTART_BACKOFF_INITIAL_S": "0.05",
    "SIOPLAY_SHUTDOWN_GRACE_S": "1",
}


def sioplay_command() -> list[str]:
    """The installed `sioplay` script next to this interpreter, else the same entry point through -m."""
    script = Path(sys.executable).with_name("sioplay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sioplay"]


class CliCluster:
    """A cluster run by the `sioplay` command; every process it was seen to have is checked at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.public_port = free_port()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("SIOPLAY_")}
        self.env |= CLUSTER_SETTINGS | {"SIOPLAY_CLUSTER": f"b{uuid.uuid4().hex[:10]}"}
        self.seen: set[ProcessRef] = set()

    def sioplay(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*sioplay_command(), "--home", str(self.home), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, nodes: int) -> None:
        run = self.sioplay("cluster", "start", "--nodes", str(nodes), "--port", str(self.public_port))
        if read_state(self.home) is not None:
            self.state()
        assert run.returncode == 0, f"sioplay cluster start: {run.stdout}{run.stderr}"

    def state(self) -> ClusterState:
        state = read_state(self.home)
        assert state is not None, f"no cluster state in {self.home}"
        self.seen.update(state.processes())
        self.seen.add(state.supervisor)
        return state

    def node_url(self, node_id: str) -> str:
        node = self.state().node(node_id)
        assert node is not None and node.port is not None, f"no {node_id} with a port in the state"
        return f"http://127.0.0.1:{node.port}"

    def node_process(self, node_id: str) -> psutil.Process:
        """The running process of `node_id`, checked to be the one the supervisor started."""
        node = self.state().node(node_id)
        ref = node.process() if node is not None else None
        process = find(ref) if ref is not None else None
        assert process is not None, f"{node_id} is not running"
        return process

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    def stop(self) -> list[str]:
        """`sioplay cluster stop`, then what went wrong: processes still running (killed here) or a failed stop."""
        if read_state(self.home) is not None:
            supervisor = find(self.state().supervisor)
            if supervisor is not None:
                self.seen.update(ProcessRef(child.pid, child.create_time()) for child in supervisor.children(True))
        run = self.sioplay("cluster", "stop")
        left = [process for ref in self.seen if (process := find(ref)) is not None]
        problems = [f"pid {process.pid} {process.cmdline()[:4]}" for process in left]
        for process in left:
            process.kill()
        psutil.wait_procs(left, timeout=5)
        if run.returncode != 0 or "stopped cluster" not in run.stdout:
            problems.append(f"cluster stop said: {run.stdout}{run.stderr}")
        return problems


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    cluster = CliCluster(tmp_path_factory.mktemp("cluster-home"))
    try:
        cluster.start(nodes=4)
        yield cluster
    finally:
        left = cluster.stop()
    assert cluster.seen and not left, f"left behind by `sioplay cluster stop`: {left}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("SIOPLAY_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}, and SIOPLAY_REQUIRE_BROWSER is set")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def test_two_people_in_maths(browser: Any, cli_cluster: CliCluster, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 900, "height": 700})
    john = context.new_page()
    mary = context.new_page()
    john.goto(f"{cli_cluster.node_url('node-1')}/ui/Maths?id_user=1")
    mary.goto(f"{cli_cluster.node_url('node-3')}/ui/Maths?id_user=2")

    expect(john.locator("#state")).to_have_text("connected to node node-1")
    expect(mary.locator("#state")).to_have_text("connected to node node-3")
    for page in (john, mary):
        expect(page.locator("#members tr")).to_have_count(2)
        expect(page.locator("#members")).to_contain_text("John")
        expect(page.locator("#members")).to_contain_text("Mary")
    expect(john.locator("#members tr").first).to_contain_text("node-1")
    expect(john.locator("#members tr").nth(1)).to_contain_text("node-3")

    john.fill("#name-input", "Johnny B.")
    john.click("#save")
    expect(mary.locator("#members")).to_contain_text("Johnny B.", timeout=EVENT_DEADLINE_MS)
    expect(john.locator("#my-name")).to_have_text("Johnny B.")

    mary.close()
    expect(john.locator("#members tr")).to_have_count(1, timeout=EVENT_DEADLINE_MS)
    expect(john.locator("#members")).not_to_contain_text("Mary")

    screenshot = tmp_path / "ui-maths.png"
    john.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    context.close()


def test_unknown_user_sees_the_refusal(browser: Any, cli_cluster: CliCluster, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{cli_cluster.node_url('node-2')}/ui/Maths?id_user=99")
    expect(page.locator("#refusal")).to_have_text("Connection refused: unknown id_user '99'")
    expect(page.locator("#state")).to_have_text("refused")
    expect(page.locator("#members")).to_be_hidden()
    page.screenshot(path=str(tmp_path / "ui-refused.png"))
    page.close()
