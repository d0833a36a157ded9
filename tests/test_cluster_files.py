"""The state file, request files, log files and sizes, without processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from sioplay.cluster import control
from sioplay.cluster.control import Request
from sioplay.cluster.logs import LogLine, follow, format_line, log_sources, merged_tail
from sioplay.common.pids import ProcessRef, alive
from sioplay.common.state import (
    ClusterState,
    NodeRecord,
    TransientProcess,
    is_running,
    read_state,
    state_path,
    write_state,
)
from sioplay.common.units import format_bytes, format_duration, parse_bytes
from sioplay.errors import ClusterError, ConfigError
from tests.log_files import LogFile


def a_state(home: Path, phase: str = "running") -> ClusterState:
    return ClusterState(
        cluster="sioplay",
        phase=phase,  # type: ignore[arg-type]
        home=str(home),
        host="0.0.0.0",
        public_port=5009,
        redis_url="redis://:secret@127.0.0.1:6380/0",
        db_url="sqlite+aiosqlite:///x.db",
        supervisor=ProcessRef.of(os.getpid()),
        started_at=1.0,
        redis=ProcessRef(123456789, 2.0),
        nodes=[NodeRecord("node-1", "online", pid=11, create_time=3.0, port=5010, restarts=2)],
        transient=[TransientProcess("node-1", 12, 4.0, 5011, "replacement")],
    )


def test_state_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    state = a_state(tmp_path)
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert oct(state_path(tmp_path).stat().st_mode & 0o777) == "0o600", "URLs in it may hold passwords"
    assert [path.name for path in state_path(tmp_path).parent.iterdir()] == ["state.json"], "no temporary left"
    raw = orjson.loads(state_path(tmp_path).read_bytes())
    assert {"cluster", "public_port", "redis_url", "db_url", "supervisor", "nodes"} <= set(raw)
    assert raw["nodes"][0].items() >= {"id": "node-1", "pid": 11, "port": 5010, "status": "online"}.items()
    assert state.processes() == [ProcessRef(11, 3.0), ProcessRef(12, 4.0), ProcessRef(123456789, 2.0)]


def test_is_running_checks_pid_and_create_time(tmp_path: Path) -> None:
    state = a_state(tmp_path)
    assert is_running(state)
    state.supervisor = ProcessRef(os.getpid(), state.supervisor.create_time - 100)
    assert not is_running(state), "same pid, another process"
    assert not is_running(a_state(tmp_path, phase="stopped"))
    assert not alive(ProcessRef(2**22 + 12345, 1.0))


def test_a_missing_or_bad_state_file(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    state_path(tmp_path).parent.mkdir()
    state_path(tmp_path).write_text("{not json")
    with pytest.raises(ClusterError, match="is not a sioplay state file"):
        read_state(tmp_path)


def test_requests_and_replies(tmp_path: Path) -> None:
    state = a_state(tmp_path)
    answers: list[control.ControlReply] = []
    asker = threading.Thread(
        target=lambda: answers.append(control.ask(tmp_path, state, Request("restart", node="node-2"), timeout=5))
    )
    asker.start()
    taken: list[Request | str] = []
    while not taken:
        taken = control.take_requests(tmp_path)
    request = taken[0]
    assert isinstance(request, Request) and (request.action, request.node) == ("restart", "node-2")
    assert request.id is not None
    control.reply(tmp_path, request.id, False, "no node 'node-2'")
    asker.join(5)
    assert answers == [control.ControlReply(False, "no node 'node-2'")]


def test_a_malformed_request_is_reported_not_run(tmp_path: Path) -> None:
    folder = tmp_path / "cluster" / "requests"
    folder.mkdir(parents=True)
    (folder / "x.request.json").write_text('{"action": "rm -rf"}')
    (taken,) = control.take_requests(tmp_path)
    assert isinstance(taken, str) and "not a request" in taken
    assert list(folder.iterdir()) == []


def test_asking_a_dead_supervisor_fails_fast(tmp_path: Path) -> None:
    state = a_state(tmp_path)
    state.supervisor = ProcessRef(2**22 + 12345, 1.0)
    with pytest.raises(ClusterError, match="stopped before answering"):
        control.ask(tmp_path, state, Request("scale", nodes=2), timeout=5)


def test_merged_view_is_in_time_order_with_prefixes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "node-1.log").write_text("2024-05-01T10:00:00.000 one\n2024-05-01T10:00:02.000 three\n")
    (logs / "node-10.log").write_text("2024-05-01T10:00:03.000 four\n")
    (logs / "node-2.log").write_text("2024-05-01T10:00:01.000 two\n")
    (logs / "supervisor.log").write_text("2024-05-01T09:59:59.000 INFO start\n")
    assert [source for source, _ in log_sources(tmp_path)] == ["node-1", "node-2", "node-10", "supervisor"]
    merged = merged_tail(log_sources(tmp_path), lines=10)
    assert [line.text for line in merged] == ["INFO start", "one", "two", "three", "four"]
    assert format_line(merged[2]).plain == "10:00:01 node-2     | two"
    node_line = LogLine.parse("node-2", "2024-05-01T10:00:04.000 INFO web1/node-2 pid=7 sioplay.node: up")
    assert format_line(node_line).plain == "10:00:04 node-2     | INFO pid=7 sioplay.node: up"
    other = LogLine.parse("node-2", "2024-05-01T10:00:05.000 INFO web1/node-20 pid=7 x: y")
    assert format_line(other).plain.endswith("| INFO web1/node-20 pid=7 x: y")
    assert [line.text for line in merged_tail(log_sources(tmp_path), lines=1)] == ["INFO start", "two", "three", "four"]


def test_follow_reads_new_lines_through_rotation_and_new_files(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "logs" / "node-1.log", max_bytes=100, backups=1)
    log.write("before")
    writes = {
        1: lambda: log.write("after 1"),
        # About 31 bytes a line: this crosses the rotation between two polls.
        2: lambda: [log.write(f"after {index}") for index in range(2, 6)],
        3: lambda: LogFile(tmp_path / "logs" / "node-2.log", 100, 1).write("new node"),
    }
    polls = 0

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        writes.get(polls, lambda: None)()
        return polls > 5

    seen = list(follow(lambda: log_sources(tmp_path), should_stop, poll_s=0))
    assert [(line.source, line.text) for line in seen] == [
        ("node-1", "after 1"),
        *[("node-1", f"after {index}") for index in range(2, 6)],
        ("node-2", "new node"),
    ]
    assert (tmp_path / "logs" / "node-1.log.1").exists(), "it did rotate"


@pytest.mark.parametrize(
    ("text", "size"),
    [("200MB", 200 * 1024**2), ("200M", 200 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)), ("4096", 4096)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_bytes(text) == size


def test_bad_sizes_and_formats() -> None:
    with pytest.raises(ConfigError, match="not a size: '200 apples'"):
        parse_bytes("200 apples")
    with pytest.raises(ConfigError, match="must be positive"):
        parse_bytes("0MB")
    assert (format_bytes(None), format_bytes(512), format_bytes(3 * 1024**2)) == ("-", "512 B", "3.0 MiB")
    assert [format_duration(value) for value in (None, 5, 300, 7200, 172800)] == ["-", "5s", "5m", "2h", "2D"]
