"""The page as a person sees it, in the system's headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_fixtures import Clusters

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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
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


@pytest.fixture
def four_nodes(clusters: Clusters) -> list[str]:
    """The own URLs of node-1 .. node-4 of a cluster started with `sioplay cluster start`'s launcher."""
    cluster = clusters.start(nodes=4)
    return [cluster.node_url(cluster.node(f"node-{index}")) for index in range(1, 5)]


def test_two_people_in_maths(browser, four_nodes: list[str], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    john_node, mary_node = four_nodes[0], four_nodes[2]
    context = browser.new_context(viewport={"width": 900, "height": 700})
    john = context.new_page()
    mary = context.new_page()
    john.goto(f"{john_node}/ui/Maths?id_user=1")
    mary.goto(f"{mary_node}/ui/Maths?id_user=2")

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


def test_unknown_user_sees_the_refusal(browser, four_nodes: list[str], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{four_nodes[1]}/ui/Maths?id_user=99")
    expect(page.locator("#refusal")).to_have_text("Connection refused: unknown id_user '99'")
    expect(page.locator("#state")).to_have_text("refused")
    expect(page.locator("#members")).to_be_hidden()
    page.screenshot(path=str(tmp_path / "ui-refused.png"))
    page.close()
