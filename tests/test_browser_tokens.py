"""The page of an `--auth token` cluster in Chromium, the token in its URL's fragment (`sioplay token --page`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sioplay.common.cluster_secret import load_or_create_secret
from sioplay.common.tokens import mint_token
from tests.test_browser import EVENT_DEADLINE_S, CliCluster, Visits, browser, ms_left, visits  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    cluster = CliCluster(tmp_path_factory.mktemp("token-cluster-home"))
    cluster.env["SIOPLAY_AUTH"] = "token"
    try:
        cluster.start(nodes=2)
        yield cluster
    finally:
        left = cluster.stop()
    assert cluster.seen and not left, f"left behind by `sioplay cluster stop`: {left}"


def page_url(cluster: CliCluster, id_user: str) -> str:
    run = cluster.sioplay("token", "--user", id_user, "--page", "Maths")
    assert run.returncode == 0, run.stderr
    url = run.stdout.strip()
    assert "#token=" in url and f"/ui/Maths?id_user={id_user}" in url, url
    return url


def test_token_pages_show_their_user_and_see_each_others_rename(
    token_cluster: CliCluster,
    visits: Visits,  # noqa: F811 - the fixture imported above
) -> None:
    from playwright.sync_api import expect

    john = visits.open(page_url(token_cluster, "1"))
    mary = visits.open(page_url(token_cluster, "2"))
    for page, name in ((john, "John"), (mary, "Mary")):
        expect(page.locator("#state")).to_contain_text("connected to node")
        expect(page.locator("#my-name")).to_have_text(name)
        expect(page.locator("#members tr")).to_have_count(2)
    john.bring_to_front()
    john.fill("#name-input", "Johnny T.")
    deadline = time.monotonic() + EVENT_DEADLINE_S
    john.click("#save")
    expect(mary.locator("#members tr").first).to_contain_text("Johnny T.", timeout=ms_left(deadline))
    expect(john.locator("#my-name")).to_have_text("Johnny T.")
    expect(john.locator("#refusal")).to_be_hidden()
    # The fragment is never sent: no request line carried the token.
    assert not [url for url in visits.urls if "token=" in url], visits.urls


@pytest.mark.parametrize(
    ("fragment", "says"),
    [
        ("", "This cluster requires a token, and this page has none"),
        ("expired", "Connection refused: the token expired"),
        ("forged", "Connection refused: the token was refused: bad signature"),
    ],
)
def test_a_page_without_a_valid_token_says_why(
    token_cluster: CliCluster,
    visits: Visits,  # noqa: F811
    fragment: str,
    says: str,
) -> None:
    from playwright.sync_api import expect

    tokens: dict[str, Any] = {
        "": None,
        "expired": mint_token(load_or_create_secret(Path(token_cluster.home)), "3", now=time.time() - 7200),
        "forged": mint_token(b"z" * 32, "3"),
    }
    token = tokens[fragment]
    url = f"{token_cluster.public_url}/ui/Maths?id_user=3" + (f"#token={token}" if token else "")
    page = visits.open(url)
    expect(page.locator("#state")).to_have_text("refused")
    expect(page.locator("#refusal")).to_contain_text(says)
    expect(page.locator("#refusal")).to_contain_text("sioplay token --user 3 --page Maths")
