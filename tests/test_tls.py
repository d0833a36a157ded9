"""HTTPS and WSS: a `--tls dev` cluster started by the CLI, reached by the CLI, python-socketio, Node and Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.cluster.dev_ca import ensure_dev_certificate
from sioplay.common.health import is_healthy
from sioplay.common.ports import free_port
from sioplay.common.state import read_state
from sioplay.common.tls import client_context
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_wait_until, http_json
from tests.test_js_client import js_client_dir  # noqa: F401 - a fixture
from tests.tls_fixtures import TlsCluster, sioplay_command, spki_sha256


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    cluster = TlsCluster(tmp_path_factory.mktemp("tls-home"))
    try:
        cluster.started = cluster.sioplay(
            "cluster", "start", "--nodes", "2", "--port", str(cluster.port), "--tls", "dev"
        )
        if read_state(cluster.home) is not None:
            cluster.state()
        assert cluster.started.returncode == 0, cluster.started.stdout + cluster.started.stderr
        yield cluster
    finally:
        left = cluster.stop()
    assert not left, f"left behind: {left}"


def test_a_dev_tls_cluster_serves_https_on_every_port(tls_cluster: TlsCluster) -> None:
    assert tls_cluster.started is not None
    said = tls_cluster.started.stdout
    assert "development certificate for localhost, 127.0.0.1 and ::1 (made now" in said
    assert f"NODE_EXTRA_CA_CERTS={tls_cluster.ca}" in said and f"curl --cacert {tls_cluster.ca}" in said
    assert f"UI       https://localhost:{tls_cluster.port}/ui/Maths?id_user=1" in said
    folder = tls_cluster.home / "tls"
    assert sorted(path.name for path in folder.iterdir()) == ["dev-ca.pem", "dev-cert.pem", "dev-key.pem"], (
        "the CA's key is not kept"
    )
    assert stat.S_IMODE((folder / "dev-key.pem").stat().st_mode) == 0o600

    state = tls_cluster.state()
    assert state.tls_cert == str((folder / "dev-cert.pem").resolve())
    own_ports = [f"https://127.0.0.1:{node.port}" for node in state.nodes]
    for base, node in zip(own_ports, state.nodes, strict=True):
        status, body, _ = tls_cluster.get(base + "/healthz")
        assert status == 200 and is_healthy(json.loads(body), node.pid)
    for base in (tls_cluster.url, f"https://127.0.0.1:{tls_cluster.port}", *own_ports):
        status, body, _ = tls_cluster.get(base + "/rooms/Maths")
        assert status == 200 and json.loads(body)["complete"] is True
    status, page, headers = tls_cluster.get(tls_cluster.url + "/ui/Maths?id_user=1")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html" in page.lower()

    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        tls_cluster.get(tls_cluster.url + "/healthz", ssl.create_default_context())
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_cluster.port}/healthz", timeout=5)

    status_run = tls_cluster.sioplay("cluster", "status", "--json")
    assert status_run.returncode == 0, status_run.stderr
    shown = json.loads(status_run.stdout)
    assert shown["ui_url"].startswith("https://") and shown["tls"] is True
    assert all(node["sockets"] == 0 for node in shown["nodes"]), "status read each node's /healthz over HTTPS"


async def test_python_clients_connect_over_wss_trusting_the_dev_ca_only(tls_cluster: TlsCluster) -> None:
    trusted = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(Settings(home=tls_cluster.home))))
    client = socketio.AsyncClient(http_session=trusted, reconnection=False)
    handshakes: list[Any] = []
    client.on("handshake", handshakes.append)
    try:
        await client.connect(f"{tls_cluster.url}?id_user=1&room=Maths", transports=["websocket"], wait_timeout=5)
        assert client.transport() == "websocket" and client.eio.base_url.startswith("wss://")
        await async_wait_until(lambda: handshakes, 5, "the handshake over WSS")
        assert handshakes[0]["id_socket"] == client.get_sid()
    finally:
        await client.disconnect()
        await trusted.close()

    stranger = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stranger.connect(f"{tls_cluster.url}?id_user=1&room=Maths", transports=["websocket"], wait_timeout=5)
    await stranger.disconnect()


def test_who_and_join_reach_the_cluster_over_https(tls_cluster: TlsCluster, tmp_path: Path) -> None:
    joined = subprocess.Popen(
        [*sioplay_command(), "--home", str(tls_cluster.home), "join", "Physics", "--user", "3", "--for", "30"],
        env=tls_cluster.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert joined.stdout is not None
        first = joined.stdout.readline()
        assert "joined Physics as 3" in first, first + (joined.stderr.read() if joined.poll() is not None else "")
        who = tls_cluster.sioplay("who", "Physics", "--json")
        assert who.returncode == 0, who.stderr
        assert [user["id_user"] for user in json.loads(who.stdout)["users"]] == [3]
    finally:
        joined.terminate()
        joined.wait(10)

    elsewhere = tmp_path / "other-home"
    refused = tls_cluster.sioplay("who", "Physics", "--url", tls_cluster.url, home=elsewhere)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: cannot reach") and "not trusted" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    trusted = tls_cluster.sioplay(
        "who", "Physics", "--url", tls_cluster.url, "--ca", str(tls_cluster.ca), home=elsewhere
    )
    assert trusted.returncode == 0, trusted.stderr
    renamed = tls_cluster.sioplay("rename", "--user", "5", "--name", "Stef", "--room", "Physics")
    assert renamed.returncode == 0 and "renamed 5 to 'Stef'" in renamed.stdout, renamed.stderr


def test_the_official_js_client_connects_over_wss_trusting_the_dev_ca(
    tls_cluster: TlsCluster,
    js_client_dir: Path,  # noqa: F811
) -> None:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_cluster.ca)}
    run = subprocess.run(
        ["node", "interop.mjs", tls_cluster.url], cwd=js_client_dir, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    pids = {node.id: node.pid for node in tls_cluster.state().nodes}
    john = seen["john_handshake"]
    assert john == {"node": john["node"], "procid": pids[john["node"]], "id_socket": seen["john_id"]}
    assert seen["roster_status"] == 200 and seen["bad_user"] == "unknown id_user '99'"

    without_ca = subprocess.run(
        ["node", "-e", _JS_ONE_CONNECT, tls_cluster.url], cwd=js_client_dir, capture_output=True, text=True, timeout=30
    )
    assert "connect_error" in without_ca.stdout, without_ca.stdout + without_ca.stderr


# One connection attempt that prints what happened; NODE_EXTRA_CA_CERTS is not set for it.
_JS_ONE_CONNECT = """
const { io } = require("socket.io-client");
const socket = io(process.argv[1], { transports: ["websocket"], query: { id_user: "1", room: "Maths" },
                                     reconnection: false });
socket.on("handshake", () => { console.log("handshake"); process.exit(0); });
socket.on("connect_error", (error) => { console.log("connect_error " + error.message); process.exit(0); });
"""


@pytest.mark.browser
def test_the_page_over_https_shows_its_user_and_renames_itself(tls_cluster: TlsCluster) -> None:
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    # Headless Chromium has no CA store to add to without NSS tools: it trusts the dev certificate's key, and
    # only that one, for this browser alone.
    spki = spki_sha256(tls_cluster.home / "tls" / "dev-cert.pem")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"]
        )
        try:
            context = chromium.new_context()
            sockets: list[str] = []
            mine = context.new_page()
            mine.on("websocket", lambda websocket: sockets.append(websocket.url))
            mine.goto(f"{tls_cluster.url}/ui/Chemistry?id_user=6")
            expect(mine.locator("#state")).to_have_text(_connected())
            expect(mine.locator("#my-name")).to_have_text("Richard")
            other = context.new_page()
            other.goto(f"{tls_cluster.url}/ui/Chemistry?id_user=7")
            expect(other.locator("#members tr")).to_have_count(2)
            mine.bring_to_front()
            mine.fill("#name-input", "Eddie")
            mine.click("#save")
            expect(mine.locator("#my-name")).to_have_text("Eddie")
            expect(other.locator("#members tr[data-id-user='6'] td").nth(1)).to_have_text("Eddie")
            assert sockets and all(url.startswith("wss://localhost:") for url in sockets), sockets
        finally:
            chromium.close()


def _connected() -> Any:
    import re

    return re.compile(r"connected to node node-\d")


def test_the_dev_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path)
    made = first.cert.read_bytes()
    again = ensure_dev_certificate(tmp_path)
    assert first.created and not again.created and again.cert.read_bytes() == made

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(made)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sorted(str(ip) for ip in names.get_values_for_type(x509.IPAddress)) == ["127.0.0.1", "::1"]
    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical and len(constraints.value.permitted_subtrees) == 3


def _start(home: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--home", str(home), "cluster", "start", "--port", str(free_port()), *args])


def test_bad_tls_options_and_files_are_one_clear_line(tmp_path: Path) -> None:
    one, two = ensure_dev_certificate(tmp_path / "one"), ensure_dev_certificate(tmp_path / "two")
    home = tmp_path / "home"
    cases = {
        ("--tls", "on"): "--tls) must be 'dev' or 'off', not 'on'",
        ("--tls", "dev", "--tls-cert", str(one.cert), "--tls-key", str(one.key)): "give --tls dev or --tls-cert",
        ("--tls-cert", str(one.cert)): "--tls-cert and --tls-key",
        ("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(one.key)): "nope.pem does not exist",
        ("--tls-cert", str(one.cert), "--tls-key", str(two.key)): f"key {two.key} does not belong to the certificate",
    }
    world_readable = tmp_path / "open.key"
    shutil.copy(one.key, world_readable)
    world_readable.chmod(0o644)
    cases[("--tls-cert", str(one.cert), "--tls-key", str(world_readable))] = "can be read by every user"
    for args, message in cases.items():
        result = _start(home, *args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in result.output, (args, result.output)
    assert read_state(home) is None, "nothing was started"


async def test_a_tls_handshake_that_never_comes_is_cut_off(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings
) -> None:
    """Cut off at the header timeout, not asyncio's 60 s: the connection guard only sees it after the handshake."""
    ensure_dev_certificate(seeded_settings.home)
    node = start_node("node-a", dataclasses.replace(seeded_settings, tls="dev", header_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        async with asyncio.timeout(10):
            assert await reader.read() == b"", "closed without a word"
    finally:
        writer.close()
    healthy = await asyncio.to_thread(http_json, node.url + "/healthz", context=node.ssl_context)
    assert healthy[0] == 200, "the node itself carries on"
