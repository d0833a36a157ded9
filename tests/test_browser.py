"""The page as a person sees it, in the system's headless Chromium driven by Playwright.

The cluster is the one a person starts: `sioplay cluster start --nodes 4` in a
state directory of the test's own, stopped with `sioplay cluster stop`. The
tests share it and keep out of each other's way by room and user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import psutil
import pytest

from sioplay.client.sim import SimClient
from sioplay.common.health import is_healthy
from sioplay.common.pids import ProcessRef, find
from sioplay.common.ports import free_port
from sioplay.common.state import ClusterState, read_state
from tests.helpers import http_json, wait_until

pytestmark = pytest.mark.browser

T = TypeVar("T")

log = logging.getLogger(__name__)

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
# The "within a second", counted from the action in one page (the click, the close) to the other page.
EVENT_DEADLINE_S = 1.0
# A node's graceful stop, and socket.io-client's reconnect back-off (up to 5 s) on top.
RECOVERY_DEADLINE_MS = 20_000
NODES = 4
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
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
        ref = node.process if node is not None else None
        process = find(ref) if ref is not None else None
        assert process is not None, f"{node_id} is not running"
        return process

    def whole(self) -> bool:
        nodes = self.state().nodes
        if len(nodes) != NODES or any(node.status != "online" for node in nodes):
            return False
        return all(
            is_healthy(http_json(self.node_url(node.id) + "/healthz", timeout_s=1.0)[1], node.pid) for node in nodes
        )

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
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    cluster = CliCluster(tmp_path_factory.mktemp("cluster-home"))
    try:
        cluster.start(nodes=NODES)
        yield cluster
    finally:
        left = cluster.stop()
    assert cluster.seen and not left, f"left behind by `sioplay cluster stop`: {left}"


@pytest.fixture
def cli_cluster(module_cluster: CliCluster) -> CliCluster:
    """The shared cluster with every node back online, whatever an earlier test stopped."""
    wait_until(module_cluster.whole, 30, f"{NODES} nodes online and healthy (state in {module_cluster.home})")
    return module_cluster


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("SIOPLAY_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}, and SIOPLAY_REQUIRE_BROWSER is set")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    # A test dependency ('.[test]'): missing, it is an install error, not a reason to skip.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclasses.dataclass
class Visits:
    """One browser context, and every URL its pages asked for (requests and websockets)."""

    context: Any
    urls: list[str] = dataclasses.field(default_factory=list)
    # Answers of 400 and above: a page a person is shown should not be asking for what is not there.
    failures: list[str] = dataclasses.field(default_factory=list)
    # What the page's Content-Security-Policy refused, as Chromium reports it on the console.
    csp_violations: list[str] = dataclasses.field(default_factory=list)

    def open(self, url: str) -> Any:
        page = self.context.new_page()
        page.on("websocket", lambda websocket: self.urls.append(websocket.url))
        # The browser's own fetches (the favicon) raise no request event; a failed one shows on the console.
        page.on("console", self.check_console)
        page.goto(url)
        return page

    def check_response(self, response: Any) -> None:
        if response.status >= 400:
            self.failures.append(f"{response.status} {response.url}")

    def check_console(self, message: Any) -> None:
        if message.type == "error" and message.text.startswith("Failed to load resource"):
            self.failures.append(f"{message.text}: {message.location.get('url')}")
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    def assert_stayed_on_loopback(self) -> None:
        assert any(url.endswith("/assets/socket.io.min.js") for url in self.urls), self.urls
        assert any(urlsplit(url).scheme == "ws" for url in self.urls), self.urls
        elsewhere = [url for url in self.urls if urlsplit(url).hostname not in LOOPBACK]
        assert elsewhere == [], f"the page reached beyond this machine: {elsewhere}"
        assert self.failures == [], self.failures
        assert self.csp_violations == [], "the page works under its own Content-Security-Policy"


@pytest.fixture
def visits(browser: Any) -> Iterator[Visits]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    made = Visits(context)
    context.on("request", lambda request: made.urls.append(request.url))
    context.on("response", made.check_response)
    try:
        yield made
    finally:
        context.close()


def rows(page: Any) -> list[list[str]]:
    return page.locator("#members tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def keep_screenshot(page: Any, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under the test's temporary directory, its path in the report (user properties, log)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"a blank screenshot? {path}"
    request.node.user_properties.append(("screenshot", str(path)))
    log.warning("screenshot: %s", path)
    return path


def ms_left(deadline: float) -> float:
    """What is left until `deadline` (time.monotonic()), as a Playwright timeout; at least one check."""
    return max(1.0, (deadline - time.monotonic()) * 1000)


def roster(cluster: CliCluster, room: str) -> dict[str, Any]:
    status, body, headers = http_json(f"{cluster.public_url}/rooms/{room}")
    assert status == 200 and headers["X-Sioplay-Complete"] == "true", (status, headers)
    return body


def test_people_in_maths_see_each_other_on_four_nodes(
    cli_cluster: CliCluster, visits: Visits, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    people = {"1": ("node-1", "John"), "2": ("node-3", "Mary"), "10": ("node-2", "Victoria")}
    pages = {
        id_user: visits.open(f"{cli_cluster.node_url(node)}/ui/Maths?id_user={id_user}")
        for id_user, (node, _) in people.items()
    }
    for id_user, page in pages.items():
        expect(page.locator("#state")).to_have_text(f"connected to node {people[id_user][0]}")
        expect(page.locator("#members tr")).to_have_count(3)

    on_server = {user["id_user"]: user for user in roster(cli_cluster, "Maths")["users"]}
    for id_user, page in pages.items():
        assert page.locator("#id-socket").text_content() == on_server[id_user]["id_socket"], "the handshake's id"
        assert on_server[id_user]["node"] == people[id_user][0]
    # By id_user as a number: 10 after 2, which a sort of strings would not give.
    expected_rows = [
        [id_user, people[id_user][1], on_server[id_user]["id_socket"], people[id_user][0]]
        for id_user in ("1", "2", "10")
    ]
    for page in pages.values():
        assert rows(page) == expected_rows
        expect(page.locator("#partial")).to_be_hidden()
    john, mary = pages["1"], pages["2"]
    expect(john.locator("#members tr.self")).to_have_attribute("data-id-user", "1")

    # A person types in the page in front. Chromium throttles a background page's animation frames, and
    # Playwright's click waits on them: 1.5-2 s spent before the form is even submitted.
    john.bring_to_front()
    john.fill("#name-input", "Johnny B.")
    deadline = time.monotonic() + EVENT_DEADLINE_S
    john.click("#save")
    expect(mary.locator("#members tr").first).to_contain_text("Johnny B.", timeout=ms_left(deadline))
    expect(john.locator("#my-name")).to_have_text("Johnny B.")

    deadline = time.monotonic() + EVENT_DEADLINE_S
    mary.close()
    expect(john.locator("#members tr")).to_have_count(2, timeout=ms_left(deadline))
    assert [row[0] for row in rows(john)] == ["1", "10"]

    keep_screenshot(john, request, tmp_path, "ui-maths.png")
    visits.assert_stayed_on_loopback()


def test_unknown_user_sees_the_refusal(
    cli_cluster: CliCluster, visits: Visits, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.node_url('node-2')}/ui/Maths?id_user=99")
    expect(page.locator("#refusal")).to_have_text("Connection refused: unknown id_user '99'")
    expect(page.locator("#state")).to_have_text("refused")
    expect(page.locator("#members")).to_be_hidden()
    keep_screenshot(page, request, tmp_path, "ui-refused.png")
    visits.assert_stayed_on_loopback()


def test_a_page_whose_node_stops_says_reconnecting_then_lands_on_another(
    cli_cluster: CliCluster, visits: Visits
) -> None:
    """On the public port, as people use it: the page reconnects to whichever node the kernel hands it."""
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.public_url}/ui/Chemistry?id_user=5")
    expect(page.locator("#state")).to_have_text(re.compile(r"connected to node node-\d"))
    expect(page.locator("#members tr")).to_have_count(1)
    first_node = page.locator("#state").text_content().rsplit(" ", 1)[1]
    first_socket = page.locator("#id-socket").text_content()
    # Every state the page shows from here on, however briefly.
    page.evaluate(
        """() => {
            const state = document.getElementById("state");
            window.shownStates = [];
            new MutationObserver(() => window.shownStates.push(state.textContent))
                .observe(state, {childList: true, characterData: true, subtree: true});
        }"""
    )

    stopped = cli_cluster.node_process(first_node)
    stopped.send_signal(signal.SIGTERM)
    page.wait_for_function(
        "() => window.shownStates.length > 1 && window.shownStates.at(-1).startsWith('connected')",
        timeout=RECOVERY_DEADLINE_MS,
    )
    shown = page.evaluate("window.shownStates")
    assert shown[0] == "reconnecting…" and re.fullmatch(r"connected to node node-\d", shown[-1]), shown
    node = shown[-1].rsplit(" ", 1)[1]
    socket = page.locator("#id-socket").text_content()
    assert socket != first_socket
    expect(page.locator("#members tr td").nth(2)).to_have_text(socket)
    assert rows(page) == [["5", "Stephanie", socket, node]]
    expect(page.locator("#node")).to_have_text(re.compile(rf"{node} \(pid \d+\)"))
    assert f"(pid {stopped.pid})" not in page.locator("#node").text_content(), "on a process that is still running"
    visits.assert_stayed_on_loopback()


def test_a_partial_roster_is_marked_until_every_node_answers_again(
    cli_cluster: CliCluster, visits: Visits, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.node_url('node-1')}/ui/Physics?id_user=3")
    expect(page.locator("#state")).to_have_text("connected to node node-1")
    expect(page.locator("#members tr")).to_have_count(1)
    expect(page.locator("#partial-badge")).to_be_hidden()

    suspended = cli_cluster.node_process("node-4")
    suspended.suspend()
    try:
        # Someone joins on node-2: the first page refreshes its list, and node-4 cannot answer.
        other = visits.open(f"{cli_cluster.node_url('node-2')}/ui/Physics?id_user=4")
        expect(page.locator("#partial")).to_have_text("Partial list: 3 of 4 nodes answered; no answer from node-4.")
        expect(page.locator("#partial-badge")).to_be_visible()
        expect(page.locator("#members tr")).to_have_count(2)
        keep_screenshot(page, request, tmp_path, "ui-partial.png")
    finally:
        suspended.resume()

    other.close()
    expect(page.locator("#members tr")).to_have_count(1)
    expect(page.locator("#partial")).to_be_hidden()
    expect(page.locator("#partial-badge")).to_be_hidden()
    visits.assert_stayed_on_loopback()


class LoopThread:
    """An event loop in a thread of its own, for Socket.IO clients next to Playwright's synchronous API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def settle(page: Any, seconds: float) -> None:
    """Let `seconds` pass with Playwright's events delivered (a plain sleep would hold them back)."""
    page.wait_for_timeout(seconds * 1000)


def test_a_burst_of_identity_changes_costs_a_page_a_few_requests(cli_cluster: CliCluster, visits: Visits) -> None:
    """One client that announces a change 200 times makes the page ask for that user twice, and for no roster."""
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.node_url('node-1')}/ui/Biology?id_user=7")
    expect(page.locator("#state")).to_have_text("connected to node node-1")
    loop = LoopThread()
    flooder = SimClient(cli_cluster.node_url("node-2"), "8", "Biology")
    try:
        loop.run(flooder.connect())
        expect(page.locator("#members tr")).to_have_count(2)
        settle(page, 0.5)
        before = len(visits.urls)
        assert http_json(f"{cli_cluster.node_url('node-2')}/users/8", "PUT", {"name": "Charlie Burst"})[0] == 204

        async def burst() -> None:
            for _ in range(200):
                await flooder.emit("identity-change", {"id_user": "8"})

        loop.run(burst())
        expect(page.locator("#members tr[data-id-user='8'] td").nth(1)).to_have_text("Charlie Burst")
        settle(page, 1.5)
    finally:
        loop.run(flooder.disconnect())
        loop.close()
    during = [urlsplit(url).path for url in visits.urls[before:]]
    user_reads = [path for path in during if path == "/users/8"]
    roster_reads = [path for path in during if path.startswith("/rooms/")]
    assert 1 <= len(user_reads) <= 3, f"{len(user_reads)} GET /users/8 for one burst"
    assert len(roster_reads) <= 1, f"{len(roster_reads)} roster queries for one burst"
    visits.assert_stayed_on_loopback()


def test_markup_in_names_and_rooms_is_inert_text(cli_cluster: CliCluster, visits: Visits) -> None:
    from playwright.sync_api import expect

    name = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    room = '"><img src=x onerror="window.pwned=3">'
    assert http_json(f"{cli_cluster.node_url('node-3')}/users/9", "PUT", {"name": name})[0] == 204
    page = visits.open(f"{cli_cluster.node_url('node-3')}/ui/{quote(room)}?id_user=9")
    expect(page.locator("#state")).to_have_text("connected to node node-3")
    expect(page.locator("#my-name")).to_have_text(name)
    expect(page.locator("#room")).to_have_text(room)
    assert rows(page)[0][:2] == ["9", name]
    assert page.evaluate("window.pwned") is None and page.locator("img").count() == 0
    visits.assert_stayed_on_loopback()


def test_the_page_runs_no_inline_script(cli_cluster: CliCluster, visits: Visits) -> None:
    """The policy is in force in the browser: a script injected into the page is refused and reported."""
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.node_url('node-4')}/ui/History?id_user=6")
    expect(page.locator("#state")).to_have_text("connected to node node-4")
    directive, ran = page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation",
                (event) => resolve([event.violatedDirective, window.inlineRan === true]), {once: true});
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.head.append(script);
        })"""
    )
    assert directive.startswith("script-src") and ran is False
    for _ in range(100):
        if visits.csp_violations:
            break
        settle(page, 0.02)
    assert visits.csp_violations and "inline script" in visits.csp_violations[0], visits.csp_violations
    visits.csp_violations.clear()
    visits.assert_stayed_on_loopback()


def test_the_page_says_loading_then_nobody_here_yet(cli_cluster: CliCluster, visits: Visits) -> None:
    """The roster's two states a bare table did not show: before the first answer, and a room with only you."""
    from playwright.sync_api import expect

    held: list[Any] = []
    # The first roster request waits until the loading state has been seen.
    visits.context.route(f"**/rooms/Loading{NODES}", lambda route: held.append(route))
    page = visits.open(f"{cli_cluster.public_url}/ui/Loading{NODES}?id_user=4")
    expect(page.locator("#roster-note")).to_have_text("loading the room…")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the page asked for no roster within 10 s"
        page.wait_for_timeout(50)  # Playwright hands over the routed request only while it is called
    held[0].continue_()
    visits.context.unroute(f"**/rooms/Loading{NODES}")
    expect(page.locator("#members tr")).to_have_count(1)
    expect(page.locator("#roster-note")).to_contain_text("nobody here yet but you")

    other = visits.open(f"{cli_cluster.public_url}/ui/Loading{NODES}?id_user=6")
    expect(other.locator("#members tr")).to_have_count(2)
    expect(page.locator("#members tr")).to_have_count(2)
    expect(page.locator("#roster-note")).to_be_hidden()
    other.close()
    expect(page.locator("#roster-note")).to_contain_text("nobody here yet but you")
    visits.assert_stayed_on_loopback()


def test_the_page_without_id_user_says_what_to_add_and_joins_from_its_form(
    cli_cluster: CliCluster, visits: Visits
) -> None:
    from playwright.sync_api import expect

    page = visits.open(f"{cli_cluster.public_url}/ui/Geography")
    expect(page.locator("#missing")).to_contain_text("add ?id_user=N to its address")
    page.locator("#id-user-input").fill("3")
    page.locator("#choose button").click()
    expect(page.locator("#state")).to_have_text(re.compile(r"connected to node node-\d"))
    assert page.url.endswith("/ui/Geography?id_user=3"), page.url
    expect(page.locator("#my-name")).to_have_text("Mike")
    visits.assert_stayed_on_loopback()
