"""`--auth token` over `--tls dev`: the official JS client and the browser page, each with its token, over WSS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sioplay.common.cluster_secret import load_or_create_secret
from sioplay.common.state import read_state
from sioplay.common.tokens import mint_token
from tests.test_js_client import js_client_dir  # noqa: F401 - a fixture
from tests.tls_fixtures import TlsCluster, spki_sha256


@pytest.fixture(scope="module")
def token_tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    cluster = TlsCluster(tmp_path_factory.mktemp("tls-token-home"))
    try:
        cluster.started = cluster.sioplay(
            "cluster", "start", "--nodes", "2", "--port", str(cluster.port), "--tls", "dev", "--auth", "token"
        )
        if read_state(cluster.home) is not None:
            cluster.state()
        assert cluster.started.returncode == 0, cluster.started.stdout + cluster.started.stderr
        yield cluster
    finally:
        left = cluster.stop()
    assert not left, f"left behind: {left}"


def test_the_official_js_client_connects_over_wss_with_its_token_in_auth(
    token_tls_cluster: TlsCluster,
    js_client_dir: Path,  # noqa: F811 - the fixture imported above
) -> None:
    secret = load_or_create_secret(token_tls_cluster.home)
    good, expired = mint_token(secret, "5"), mint_token(secret, "5", now=time.time() - 7200)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(token_tls_cluster.ca)}
    run = subprocess.run(
        ["node", "token.mjs", token_tls_cluster.url, good, expired],
        cwd=js_client_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    pids = {node.id: node.pid for node in token_tls_cluster.state().nodes}
    handshake = seen["handshake"]
    assert handshake == {"node": handshake["node"], "procid": pids[handshake["node"]], "id_socket": seen["id"]}
    assert seen["refusal"] == "token expired"


@pytest.mark.browser
def test_the_page_over_https_with_a_token_url_shows_its_user_and_renames_itself(
    token_tls_cluster: TlsCluster,
) -> None:
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    def page_url(user: str) -> str:
        minted = token_tls_cluster.sioplay("token", "--user", user, "--page", "Chemistry", "--json")
        assert minted.returncode == 0, minted.stderr
        url = json.loads(minted.stdout)["page"]
        assert url.startswith("https://") and "#token=" in url, url
        return url

    spki = spki_sha256(token_tls_cluster.home / "tls" / "dev-cert.pem")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"]
        )
        try:
            context = chromium.new_context()
            requested: list[str] = []
            context.on("request", lambda request: requested.append(request.url))
            mine = context.new_page()
            mine.goto(page_url("6"))
            expect(mine.locator("#state")).to_have_text(re.compile(r"connected to node node-\d"))
            expect(mine.locator("#my-name")).to_have_text("Richard")
            other = context.new_page()
            other.goto(page_url("7"))
            expect(other.locator("#members tr")).to_have_count(2)
            mine.bring_to_front()
            mine.fill("#name-input", "Eddie")
            mine.click("#save")
            expect(mine.locator("#my-name")).to_have_text("Eddie")
            expect(other.locator("#members tr[data-id-user='6'] td").nth(1)).to_have_text("Eddie")
            assert requested and not [url for url in requested if "token" in url], "the token is never in a request"
        finally:
            chromium.close()
