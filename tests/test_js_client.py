"""The official JavaScript socket.io-client 4.x against two real nodes, every client on their shared public port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sioplay.common.ports import free_port
from tests.helpers import NodeHandle

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def js_client_dir() -> Path:
    """tests/js with its pinned socket.io-client installed (`npm ci` when .ci/run has not done it)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        reason = "Node.js and npm are needed to run the official socket.io-client"
        if os.environ.get("SIOPLAY_REQUIRE_NODEJS"):
            pytest.fail(f"{reason}, and SIOPLAY_REQUIRE_NODEJS is set")
        pytest.skip(reason)
    if not (JS_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True, timeout=300
        )
    return JS_DIR


def test_official_client_keeps_the_contract(js_client_dir: Path, start_node: Callable[..., NodeHandle]) -> None:
    public_port = free_port()
    nodes = [start_node(node_id, public_port=public_port) for node_id in ("node-1", "node-2")]
    pids = {node.node_id: node.pid for node in nodes}

    run = subprocess.run(
        ["node", "interop.mjs", f"http://127.0.0.1:{public_port}"],
        cwd=js_client_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)

    john, mary = seen["john_handshake"], seen["mary_handshake"]
    assert john == {"node": john["node"], "procid": pids[john["node"]], "id_socket": seen["john_id"]}
    assert mary == {"node": mary["node"], "procid": pids[mary["node"]], "id_socket": seen["mary_id"]}
    assert {john["node"], mary["node"]} == {"node-1", "node-2"}, "both nodes reached through the public port"
    assert all(try_["node"] == john["node"] for try_ in seen["discarded"]), "only tries on john's node are dropped"
    assert seen["john_saw_connect"] == {"id_socket": seen["mary_id"], "id_user": "2", "node": mary["node"]}
    assert seen["john_saw_identity_change"] == {
        "id_user": "2",
        "id_socket": seen["mary_id"],
        "node": mary["node"],
    }, "server-stamped"
    assert seen["roster_status"] == 200
    assert seen["roster"] == [
        {"id_socket": seen["john_id"], "id_user": "1"},
        {"id_socket": seen["mary_id"], "id_user": "2"},
    ]
    assert seen["bad_user"] == "unknown id_user '99'"
    assert seen["missing_user"].startswith("id_user is missing")
    assert seen["bad_room"] == "room name is missing or empty"
    assert seen["long_room"] == "room name is longer than 64 characters (65)"
    assert seen["john_saw_disconnect"] == {"id_socket": seen["mary_id"], "id_user": "2", "node": mary["node"]}
    assert seen["roster_after"] == [{"id_socket": seen["john_id"], "id_user": "1"}]
