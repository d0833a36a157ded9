"""`sioplay swarm` against a real 2-node cluster: many clients from one process, per node, with reconnects."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from typing import Any

import pytest

from sioplay.client.swarm import parse_users
from sioplay.client.wire import WireClient
from sioplay.common.ports import free_port
from sioplay.errors import ClientError, ValidationError
from tests.cli_fixtures import Cluster, Output, cli
from tests.helpers import http_json, wait_until

pytestmark = pytest.mark.timeout(60)


def roster(url: str) -> dict[str, Any]:
    return http_json(url + "/rooms/Maths")[1]


def test_swarm_holds_200_clients_and_reports_them_per_node(cluster: Cluster, processes: list[Output]) -> None:
    swarm = Output(cluster.settings, "swarm", "Maths", "--clients", "200", "--for", "3", "--json", "--url", cluster.url)
    processes.append(swarm)
    held = wait_until(lambda: (r := roster(cluster.a.url))["sockets"] == 200 and r, 20, "200 sockets in the roster")

    code, stderr = swarm.wait(30)
    assert code == 0, stderr
    summary = json.loads(swarm.text)
    on_server = Counter(user["node"] for user in held["users"])
    assert summary["clients"] == summary["connected"] == 200
    assert summary["per_node"] == dict(on_server) and set(on_server) == {"node-a", "node-b"}
    assert summary["errors"] == summary["reconnects"] == 0
    assert 0 < summary["connect_seconds"] < 20
    assert Counter(user["id_user"] for user in held["users"]) == {str(n): 20 for n in range(1, 11)}, "round-robin"
    wait_until(lambda: roster(cluster.b.url)["sockets"] == 0, 10, "the swarm to leave the room")


def test_swarm_ramp_paces_the_connects(cluster: Cluster) -> None:
    # At 5 per second the 6th client starts 1 s after the 1st: however fast the nodes, not all are in before.
    clients, per_second = 6, 5
    result = cli(
        cluster.settings.home,
        "swarm",
        "Maths",
        "--clients",
        str(clients),
        "--ramp",
        str(per_second),
        "--for",
        "0",
        "--json",
        "--url",
        cluster.url,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["connected"] == clients and summary["errors"] == 0
    assert summary["connect_seconds"] >= (clients - 1) / per_second, summary


def test_swarm_reconnects_the_clients_of_a_killed_node(cluster: Cluster, processes: list[Output]) -> None:
    swarm = Output(cluster.settings, "swarm", "Maths", "--clients", "40", "--for", "60", "--json", "--url", cluster.url)
    processes.append(swarm)
    held = wait_until(lambda: (r := roster(cluster.a.url))["sockets"] == 40 and r, 20, "40 sockets in the roster")
    on_b = sum(1 for user in held["users"] if user["node"] == "node-b")
    assert on_b > 0, "the kernel spread the clients over both nodes"

    cluster.b.kill()
    wait_until(
        lambda: [user["node"] for user in roster(cluster.a.url)["users"]] == ["node-a"] * 40,
        20,
        "every client back, on node-a",
    )
    swarm.process.send_signal(signal.SIGINT)
    code, stderr = swarm.wait(30)
    assert code == 0, stderr
    summary = json.loads(swarm.text)
    assert summary["connected"] == 40 and summary["per_node"] == {"node-a": 40}
    assert summary["reconnects"] == on_b


def test_swarm_refuses_what_retrying_cannot_fix(cluster: Cluster) -> None:
    home, url = cluster.settings.home, cluster.url
    cases = [
        (["--users", "1-12"], "error: --users: 11-12 are unknown; --users must name existing users"),
        (["--users", "3-1"], "error: --users must look like '1-10' or '1,4,7', not '3-1'"),
        (["--url", f"http://127.0.0.1:{free_port()}"], "error: cannot reach"),
    ]
    for args, message in cases:
        result = cli(home, "swarm", "Maths", "--clients", "5", "--url", url, *args)
        assert result.exit_code == 1 and message in result.stderr, (args, result.output)
    bad_room = cli(home, "swarm", "x" * 65, "--clients", "5", "--url", url)
    assert bad_room.exit_code == 1 and "room name is longer than 64 characters" in bad_room.stderr, bad_room.output

    async def refused() -> str:
        with pytest.raises(ClientError) as error:
            await WireClient(url, "99", "Maths", lambda: None).connect()
        return str(error.value)

    assert asyncio.run(refused()) == "unknown id_user '99'", "a swarm member hears the server's refusal"


def test_users_are_ranges_or_lists() -> None:
    assert parse_users("1-10") == [str(n) for n in range(1, 11)]
    assert parse_users("1,4-5, 7,4") == ["1", "4", "5", "7"]
    assert parse_users("alice") == ["alice"]
    for bad in ("", "1-", "a-b", "5-1", "1,,2"):
        with pytest.raises(ValidationError):
            parse_users(bad)
