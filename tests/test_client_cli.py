"""`sioplay join | who | rename` against a real 2-node cluster sharing one public port."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.client.sim import SimClient
from sioplay.client.target import DEFAULT_URL, resolve_url
from sioplay.common.pids import ProcessRef
from sioplay.common.ports import free_port
from sioplay.common.state import ClusterState, NodeRecord, write_state
from sioplay.errors import ClientError
from sioplay.settings import Settings
from tests.cli_fixtures import Cluster, Output, cli, start_cluster
from tests.helpers import NodeHandle, async_http_json, async_wait_until, http_json, wait_until


def test_join_prints_the_handshake_and_room_events_with_names(cluster: Cluster, processes: list[Output]) -> None:
    john = Output(cluster.settings, "join", "Maths", "--user", "1", "--for", "30", "--url", cluster.url)
    processes.append(john)
    handshake = wait_until(
        lambda: re.search(r"joined Maths as 1 \(John\) on (node-[ab]), socket (\S+) \(pid (\d+)\)", john.text),
        10,
        f"john's handshake line (so far: {john.text!r})",
    )
    node, sid, pid = handshake.groups()
    assert int(pid) == {"node-a": cluster.a.pid, "node-b": cluster.b.pid}[node]
    roster = http_json(cluster.a.url + "/rooms/Maths")[1]
    assert [(u["id_socket"], u["node"]) for u in roster["users"]] == [(sid, node)]

    mary = cli(
        cluster.settings.home,
        "join",
        "Maths",
        "--user",
        "2",
        "--name",
        "Marie",
        "--for",
        "0.3",
        "--json",
        "--url",
        cluster.b.url,
    )
    assert mary.exit_code == 0, mary.output
    events = [json.loads(line) for line in mary.stdout.splitlines()]
    assert [event["event"] for event in events] == ["handshake", "roster", "renamed", "left"]
    assert events[0]["data"]["node"] == "node-b" and events[0]["name"] == "Mary"
    assert events[2] == {"at": events[2]["at"], "event": "renamed", "id_user": 2, "name": "Marie"}
    mary_sid = events[0]["data"]["id_socket"]

    left = f"socket-disconnected  node-b      2 (Marie)               socket {mary_sid}"
    wait_until(lambda: left in john.text, 10, f"mary leaving in {john.text!r}")
    stamped = [line for line in john.text.splitlines() if not re.match(r"\d\d:\d\d:\d\d\.\d{3}  \S", line)]
    assert stamped == [], "every line starts with the local time as HH:MM:SS.mmm"
    seen = [line.split("  ", 1)[1] for line in john.text.splitlines()[1:]]
    assert seen[0].startswith("in Maths now: 1 user, 1 socket · 2 of 2 nodes answered"), seen
    assert seen[1] == f"member               {node:<10}  1 (John)                socket {sid}", seen
    assert re.fullmatch(rf"socket-connected     node-b      2 \((Mary|Marie)\) +socket {mary_sid}", seen[2]), seen
    assert seen[3:] == [
        f"identity-change      node-b      2 (Marie)               socket {mary_sid}",
        left,
    ]
    assert len({line.index("socket ") for line in seen[1:]}) == 1, "the columns line up"

    code, stderr = john.interrupt()
    assert code == 130 and "Traceback" not in stderr, stderr
    assert john.lines[-1][1].endswith("left Maths"), john.text
    assert http_json(cluster.a.url + "/rooms/Maths")[1]["sockets"] == 0, "Ctrl-C leaves the room"


def test_sigterm_ends_join_as_ctrl_c_does(cluster: Cluster, processes: list[Output]) -> None:
    john = Output(cluster.settings, "join", "Maths", "--user", "1", "--url", cluster.url)
    processes.append(john)
    wait_until(lambda: "joined Maths as 1" in john.text, 10, f"john's handshake line (so far: {john.text!r})")
    john.process.send_signal(signal.SIGTERM)
    code, stderr = john.wait()
    assert code == 130 and "Traceback" not in stderr, stderr
    assert john.lines[-1][1].endswith("left Maths"), john.text
    assert http_json(cluster.a.url + "/rooms/Maths")[1]["sockets"] == 0


async def test_join_json_reports_another_clients_connect_rename_and_leave(
    cluster: Cluster, clients: list[SimClient], processes: list[Output]
) -> None:
    john = Output(cluster.settings, "join", "Maths", "--user", "1", "--json", "--for", "30", "--url", cluster.url)
    processes.append(john)

    def events() -> list[dict[str, Any]]:
        return [json.loads(line) for _, line in list(john.lines)]

    def heard(event: str) -> bool:
        return any(line["event"] == event for line in events())

    await async_wait_until(lambda: heard("handshake"), 10, f"john's handshake (stderr: {john.errors})")
    mary = SimClient(cluster.b.url, "2", "Maths")
    clients.append(mary)
    await mary.connect()
    sid = mary.sid
    # Renamed only once john has printed her arrival, so that it shows the name she arrived with.
    await async_wait_until(lambda: heard("socket-connected"), 10, f"mary's arrival in {john.text}")
    assert (await async_http_json(cluster.b.url + "/users/2", "PUT", {"name": "Marie"}))[0] == 204
    await mary.call("identity-change", {"id_user": "2"})
    await mary.disconnect()
    await async_wait_until(lambda: heard("socket-disconnected"), 10, f"mary leaving in {john.text}")

    handshake, roster, *others = events()
    assert handshake["event"] == "handshake" and handshake["name"] == "John" and handshake["reconnected"] is False
    assert roster["event"] == "roster" and [user["id_user"] for user in roster["data"]["users"]] == [1]
    assert [{key: line[key] for key in ("event", "data", "name")} for line in others] == [
        {"event": "socket-connected", "data": {"id_socket": sid, "id_user": 2, "node": "node-b"}, "name": "Mary"},
        {"event": "identity-change", "data": {"id_user": 2, "id_socket": sid, "node": "node-b"}, "name": "Marie"},
        {"event": "socket-disconnected", "data": {"id_socket": sid, "id_user": 2, "node": "node-b"}, "name": "Marie"},
    ]
    for line in events():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["at"]), line
    code, stderr = john.interrupt()
    assert code == 130 and "Traceback" not in stderr, stderr


async def test_who_json_is_the_server_roster_with_names(cluster: Cluster, clients: list[SimClient]) -> None:
    for node, id_user in ((cluster.a, "1"), (cluster.b, "2"), (cluster.a, "2")):
        clients.append(SimClient(node.url, id_user, "Maths"))
        await clients[-1].connect()

    result = await asyncio.to_thread(cli, cluster.settings.home, "who", "Maths", "--json", "--url", cluster.url)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    server = (await async_http_json(cluster.b.url + "/rooms/Maths"))[1]
    names = {"1": "John", "2": "Mary"}
    # The CLI's JSON types id_user as the database does: an integer.
    users = [{**user, "id_user": int(user["id_user"]), "name": names[user["id_user"]]} for user in server["users"]]
    expected = {**server, "users": users}
    assert {**shown, "took_ms": 0} == {**expected, "took_ms": 0}
    assert shown["complete"] is True and shown["sockets"] == 3

    table = await asyncio.to_thread(cli, cluster.settings.home, "who", "Maths", "--url", cluster.url)
    assert table.exit_code == 0, table.output
    rows = [re.split(r"\s*│\s*", line.strip("│ ")) for line in table.stdout.splitlines() if line.startswith("│")]
    assert rows == [["1", "John", "1", "node-a"], ["2", "Mary", "2", "node-a, node-b"]]
    assert "2 users, 3 sockets · 2 of 2 nodes answered" in table.stdout


def test_who_marks_a_partial_answer(start_node: Callable[..., NodeHandle], seeded_settings: Settings) -> None:
    # A stopped node stays expected for 10 s, and the roster gives up on it after 0.5 s.
    patient = dataclasses.replace(seeded_settings, heartbeat_interval_s=1.0, heartbeat_misses=10, roster_timeout_s=0.5)
    cluster = start_cluster(start_node, patient)
    stopped = psutil.Process(cluster.b.pid)
    stopped.suspend()
    try:
        table = cli(patient.home, "who", "Maths", "--url", cluster.a.url)
        shown = json.loads(cli(patient.home, "who", "Maths", "--json", "--url", cluster.a.url).stdout)
    finally:
        stopped.resume()
    assert table.exit_code == 0, table.output
    words = " ".join(table.stdout.split())
    assert "Maths (PARTIAL)" in words and "no answer from node-b" in words
    assert "PARTIAL: 0 users, 0 sockets known · 1 of 2 nodes answered; no answer from node-b" in words
    assert shown["complete"] is False and shown["nodes"]["missing"] == ["node-b"]


def snapshots(watch: Output) -> list[tuple[float, str]]:
    """(arrival of its heading, text) of every complete table `who Maths --watch` has printed so far."""
    found: list[tuple[float, list[str]]] = []
    for at, line in list(watch.lines):
        if line.startswith("Maths at "):
            found.append((at, []))
        if found:
            found[-1][1].append(line)
    return [(at, "\n".join(lines)) for at, lines in found if lines[-1].endswith(" ms")]


async def test_who_watch_follows_joins_renames_and_leaves_within_a_second(
    cluster: Cluster, clients: list[SimClient], processes: list[Output]
) -> None:
    # --refresh 60: whatever changes within the test was pushed by an event, not found by the timer.
    watch = Output(cluster.settings, "who", "Maths", "--watch", "--refresh", "60", "--for", "60", "--url", cluster.url)
    processes.append(watch)

    async def shows(what: str, since: float) -> None:
        def arrived() -> float | None:
            return next((at for at, text in snapshots(watch) if at >= since and what in text), None)

        at = await async_wait_until(arrived, 5, f"{what!r} in the watched table: {watch.text}")
        assert at - since < 1.0, f"{what!r} shown {at - since:.2f} s after the change"

    await async_wait_until(lambda: snapshots(watch), 10, f"the first table (stderr: {watch.errors})")
    assert "0 users, 0 sockets · 2 of 2 nodes answered" in snapshots(watch)[0][1]

    since = time.monotonic()
    mary = SimClient(cluster.b.url, "2", "Maths")
    clients.append(mary)
    await mary.connect()
    await shows("│ 2       │ Mary │ 1       │ node-b │", since)

    roster = (await async_http_json(cluster.a.url + "/rooms/Maths"))[1]
    assert [user["id_socket"] for user in roster["users"]] == [mary.sid], "the observer is not a member"
    healths = [(await async_http_json(node.url + "/healthz"))[1] for node in (cluster.a, cluster.b)]
    assert sum(health["sockets"] for health in healths) == 1

    since = time.monotonic()
    assert (await async_http_json(cluster.b.url + "/users/2", "PUT", {"name": "Marianne"}))[0] == 204
    await mary.call("identity-change", {"id_user": "2"})
    await shows("│ 2       │ Marianne │", since)

    since = time.monotonic()
    await mary.disconnect()
    await shows("0 users, 0 sockets · 2 of 2 nodes answered", since)

    code, stderr = watch.interrupt()
    assert code == 130 and "Traceback" not in stderr, stderr


async def test_who_watch_marks_a_partial_answer_until_every_node_answers_again(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, processes: list[Output]
) -> None:
    patient = dataclasses.replace(seeded_settings, heartbeat_interval_s=1.0, heartbeat_misses=10, roster_timeout_s=0.5)
    cluster = start_cluster(start_node, patient)
    watch = Output(patient, "who", "Maths", "--watch", "--refresh", "0.3", "--for", "60", "--url", cluster.a.url)
    processes.append(watch)
    await async_wait_until(lambda: snapshots(watch), 10, f"the first table (stderr: {watch.errors})")

    def shown_after(since: float, what: str) -> str | None:
        return next((text for at, text in snapshots(watch) if at >= since and what in text), None)

    suspended = psutil.Process(cluster.b.pid)
    suspended.suspend()
    try:
        since = time.monotonic()
        partial = await async_wait_until(lambda: shown_after(since, "PARTIAL"), 10, f"a partial table in {watch.text}")
    finally:
        suspended.resume()
    assert "1 of 2 nodes answered; no answer from node-b" in " ".join(partial.split())

    since = time.monotonic()
    healed = await async_wait_until(
        lambda: shown_after(since, "2 of 2 nodes answered"), 10, f"a complete table in {watch.text}"
    )
    assert "PARTIAL" not in healed
    code, stderr = watch.interrupt()
    assert code == 130 and "Traceback" not in stderr, stderr


async def test_who_watch_refreshes_on_its_timer_when_no_event_comes(
    cluster: Cluster, clients: list[SimClient], processes: list[Output]
) -> None:
    mary = SimClient(cluster.b.url, "2", "Maths")
    clients.append(mary)
    await mary.connect()
    watch = Output(cluster.settings, "who", "Maths", "--watch", "--refresh", "0.3", "--for", "60", "--url", cluster.url)
    processes.append(watch)
    await async_wait_until(lambda: any("│ Mary │" in text for _, text in snapshots(watch)), 10, f"Mary in {watch.text}")

    # Renamed behind the room's back: no identity-change, so only the periodic refresh can find it.
    assert (await async_http_json(cluster.a.url + "/users/2", "PUT", {"name": "Mariana"}))[0] == 204
    shown = await async_wait_until(
        lambda: next((text for _, text in snapshots(watch) if "│ Mariana │" in text), None),
        5,
        f"Mariana in {watch.text}",
    )
    assert re.match(r"Maths at \d\d:\d\d:\d\d\.\d{3} after timer\n", shown), shown
    code, stderr = watch.interrupt()
    assert code == 130 and "Traceback" not in stderr, stderr


async def test_rename_tells_the_room_only_when_asked(cluster: Cluster, clients: list[SimClient]) -> None:
    john = SimClient(cluster.a.url, "1", "Maths")
    clients.append(john)
    await john.connect()
    home = cluster.settings.home

    quiet = await asyncio.to_thread(cli, home, "rename", "--user", "3", "--name", "Mikey", "--url", cluster.url)
    assert quiet.exit_code == 0, quiet.output
    assert "renamed 3 to 'Mikey' (no room told: give --room to announce it)" in quiet.stdout
    assert (await async_http_json(cluster.a.url + "/users/3"))[1]["name"] == "Mikey"

    told = await asyncio.to_thread(
        cli, home, "rename", "--user", "3", "--name", "Michael", "--room", "Maths", "--url", cluster.url
    )
    assert told.exit_code == 0, told.output
    assert re.search(r"renamed 3 to 'Michael' and told room 'Maths' \(via node-[ab]\)", told.stdout)
    change = await john.wait_event("identity-change", id_user="3")
    left = await john.wait_event("socket-disconnected", id_user="3")
    assert change.at <= left.at and change.data["id_socket"] == left.data["id_socket"]
    assert (await async_http_json(cluster.b.url + "/users/3"))[1]["name"] == "Michael"
    assert [event.name for event in john.events if event.data and event.data.get("id_user") == "3"] == [
        "socket-connected",
        "identity-change",
        "socket-disconnected",
    ]


def test_join_with_several_urls_skips_one_that_does_not_answer_and_moves_on_when_dropped(
    cluster: Cluster, processes: list[Output]
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    # A comma-separated list and a repeated --url are one list: nobody, node-a, node-b.
    urls = ["--url", f"{nobody},{cluster.a.url}", "--url", cluster.b.url]
    john = Output(cluster.settings, "join", "Maths", "--user", "1", "--for", "60", *urls)
    processes.append(john)
    first = john.wait_printed(r"^\S+  joined Maths as 1 \(John\) on (node-\w) via (\S+), socket (\S+)", 15)
    assert first.group(1, 2) == ("node-a", cluster.a.url)

    cluster.a.stop()
    moved = john.wait_printed(r"rejoined Maths as 1 \(John\) on (node-\w) via (\S+), socket (\S+)", 20)
    assert moved.group(1, 2) == ("node-b", cluster.b.url), john.text
    roster = http_json(cluster.b.url + "/rooms/Maths")[1]
    assert [(user["id_user"], user["node"], user["id_socket"]) for user in roster["users"]] == [
        ("1", "node-b", moved[3])
    ]
    assert john.process.poll() is None, john.stderr

    none = cli(cluster.settings.home, "join", "Maths", "--user", "1", "--url", f"{nobody},{cluster.a.url}")
    assert none.exit_code == 1 and "cannot connect through any of 2 URLs" in none.stderr, none.output
    assert f"cannot reach {nobody}/healthz" in none.stderr, none.stderr


def test_refusals_and_unreachable_clusters_say_why_and_exit_non_zero(cluster: Cluster) -> None:
    home, url = cluster.settings.home, cluster.url
    nobody = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["join", "Maths", "--user", "99", "--url", url], "error: unknown id_user '99'"),
        (["join", "x" * 65, "--user", "1", "--url", url], "error: room name is longer than 64 characters (65)"),
        (["rename", "--user", "1", "--name", "X", "--room", "", "--url", url], "error: room name is missing or empty"),
        (["rename", "--user", "99", "--name", "X", "--url", url], "error: unknown id_user '99'"),
        (["who", "x" * 65, "--url", url], "error: room name is longer than 64 characters (65)"),
        (["who", "", "--url", url], "error: room name is missing or empty"),
        (["who", "Maths", "--url", nobody], f"error: cannot reach {nobody}/rooms/Maths"),
        (["join", "Maths", "--user", "1", "--url", nobody], f"error: cannot reach {nobody}/healthz"),
        (["who", "Maths", "--watch", "--url", nobody], "is a cluster running? start one with 'sioplay cluster start'"),
        (["who", "Maths", "--node", "node-a"], "error: --node node-a: no running cluster"),
    ]
    for args, message in cases:
        result = cli(home, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output and result.stdout == "", (args, result.output)
    assert http_json(cluster.a.url + "/users/1")[1]["name"] == "John", "a refused rename changed nothing"

    verbose = CliRunner().invoke(app, ["--home", str(home), "--verbose", "who", "Maths", "--url", nobody])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port where the kernel accepts connections and nobody ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_server_that_never_answers_gives_one_line_and_exit_1(silent_url: str, tmp_path: Path) -> None:
    cases = [
        (["who", "Maths"], f"GET {silent_url}/rooms/Maths"),
        (["who", "Maths", "--watch"], f"GET {silent_url}/healthz"),
        (["join", "Maths", "--user", "1"], f"GET {silent_url}/healthz"),
        (["rename", "--user", "1", "--name", "X"], f"PUT {silent_url}/users/1"),
    ]
    for args, request in cases:
        result = cli(tmp_path, *args, "--url", silent_url, "--timeout", "0.5")
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.splitlines() == [f"error: {request}: no answer within 0.5 s"], (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)


def write_running_state(home: Path, cluster: Cluster | None, **changes: Any) -> None:
    """The state file of a supervisor (this process, so it is alive) running `cluster`'s nodes."""
    me = psutil.Process()
    state = ClusterState(
        cluster="test",
        phase="running",
        home=str(home),
        host="0.0.0.0",
        public_port=int(cluster.url.rsplit(":", 1)[1]) if cluster else 5999,
        redis_url=None,
        db_url="sqlite+aiosqlite://",
        supervisor=ProcessRef(me.pid, me.create_time()),
        started_at=time.time(),
        nodes=[
            NodeRecord(id=node.node_id, status="online", pid=node.pid, port=node.port)
            for node in ((cluster.a, cluster.b) if cluster else ())
        ],
    )
    write_state(home, dataclasses.replace(state, **changes))


def test_node_and_default_urls_come_from_the_state_file(cluster: Cluster) -> None:
    home = cluster.settings.home
    write_running_state(home, cluster)
    joined = cli(home, "join", "Maths", "--user", "1", "--node", "node-b", "--for", "0", "--json")
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.stdout.splitlines()[0])["data"]["node"] == "node-b"
    who = cli(home, "who", "Maths", "--json")
    assert who.exit_code == 0 and json.loads(who.stdout)["nodes"]["expected"] == 2, who.output
    unknown = cli(home, "who", "Maths", "--node", "node-z")
    assert unknown.exit_code == 1
    assert "no node 'node-z' in the running cluster (nodes: node-a, node-b)" in unknown.stderr


def test_rename_and_swarm_aim_at_the_node_given(cluster: Cluster) -> None:
    home = cluster.settings.home
    write_running_state(home, cluster)
    for node in ("node-a", "node-b"):
        told = cli(home, "rename", "--user", "3", "--name", f"Mike of {node}", "--room", "Maths", "--node", node)
        assert told.exit_code == 0, told.output
        assert f"and told room 'Maths' (via {node})" in told.stdout
        crowd = cli(home, "swarm", "Maths", "--clients", "4", "--for", "0", "--json", "--node", node)
        assert crowd.exit_code == 0, crowd.output
        assert json.loads(crowd.stdout)["per_node"] == {node: 4}


def test_url_resolution_without_a_running_cluster(tmp_path: Path) -> None:
    assert resolve_url(tmp_path) == DEFAULT_URL
    assert resolve_url(tmp_path, url="example.org:5010/") == "http://example.org:5010"
    write_running_state(tmp_path, None)
    assert resolve_url(tmp_path) == "http://127.0.0.1:5999"
    write_running_state(tmp_path, None, phase="stopped")
    assert resolve_url(tmp_path) == DEFAULT_URL
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    write_running_state(tmp_path, None, supervisor=ProcessRef(dead.pid, 1.0))
    assert resolve_url(tmp_path) == DEFAULT_URL, "a stale state file is no running cluster"
    (tmp_path / "cluster" / "state.json").write_text("{not json")
    assert resolve_url(tmp_path) == DEFAULT_URL
    with pytest.raises(ClientError, match="not both"):
        resolve_url(tmp_path, url="http://x", node="node-1")
    with pytest.raises(ClientError, match="--url must be an http"):
        resolve_url(tmp_path, url="ftp://x")
