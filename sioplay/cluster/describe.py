"""`cluster describe NODE`: one node in full, like `pm2 describe`; and the node names the CLI accepts.

The restarts and their reasons come from the supervisor's lifecycle lines in the
node's own log (``[supervisor] pid N …``), which it writes for every start and exit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sioplay.cluster.logs import LogLine, node_log_path
from sioplay.cluster.status import StatusCollector
from sioplay.common.pids import find
from sioplay.common.state import ClusterState
from sioplay.common.units import format_bytes, format_duration
from sioplay.common.urls import local_url
from sioplay.errors import ClusterError

__all__ = ["describe_node", "render_description", "resolve_node"]

_LIFECYCLE = "[supervisor] "
_HISTORY = 20


def _short(node_id: str) -> str:
    return node_id.rsplit("/", 1)[-1]


def resolve_node(state: ClusterState, name: str) -> str:
    """The id of the node `name` names: its id (``host/node-2``) or its short name (``node-2``)."""
    ids = [node.id for node in state.nodes]
    if name in ids:
        return name
    matches = [node_id for node_id in ids if _short(node_id) == _short(name)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(ids) or "none"
    if matches:
        raise ClusterError(f"{name!r} names several nodes ({', '.join(matches)}); give the full id")
    raise ClusterError(f"no node {name!r}; the nodes are {known}")


def _lifecycle(home: Path, node_id: str) -> list[dict[str, str]]:
    """The supervisor's start and exit lines for this node, oldest first, from its log and the rotated ones."""
    base = node_log_path(home, node_id)
    paths = sorted(base.parent.glob(base.name + ".*"), key=lambda path: path.name, reverse=True) + [base]
    events = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            line = LogLine.parse(node_id, raw)
            if line.text.startswith(_LIFECYCLE):
                events.append({"at": line.at, "event": line.text.removeprefix(_LIFECYCLE)})
    return events[-_HISTORY:]


def describe_node(state: ClusterState, node_id: str, collector: StatusCollector, cpu_sample_s: float) -> dict[str, Any]:
    """The JSON of `cluster describe NODE --json`."""
    record = state.node(node_id)
    assert record is not None
    status = collector.collect(state, cpu_sample_s=cpu_sample_s)
    live = next(node for node in status["nodes"] if node["id"] == node_id)
    process = find(record.process) if record.process is not None else None
    try:
        command = process.cmdline() if process is not None else None
    except psutil.Error:
        command = None
    log_path = node_log_path(Path(state.home), node_id)
    return {
        "id": node_id,
        "cluster": state.cluster,
        "status": record.status,
        "pid": record.pid,
        "command": command,
        "host": state.host,
        "port": record.port,
        "public_port": state.public_port,
        "url": local_url(state.host, record.port) if record.port else None,
        "started_at": record.started_at,
        "uptime_s": round(time.time() - record.started_at, 1) if record.started_at and record.pid else None,
        "restarts": record.restarts,
        "last_exit": record.last_exit,
        "reason": record.reason,
        "history": _lifecycle(Path(state.home), node_id),
        "rss_bytes": live["rss_bytes"],
        "cpu_percent": live["cpu_percent"],
        "sockets": live["sockets"],
        "logs": [str(log_path), *sorted(str(path) for path in log_path.parent.glob(log_path.name + ".*"))],
        "log_tail": record.log_tail,
        "transient": [process for process in status["transient"] if process["id"] == node_id],
    }


def render_description(value: dict[str, Any]) -> RenderableType:
    table = Table(show_header=False, title=Text(f"{value['id']} · cluster {value['cluster']}"), title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    command = " ".join(value["command"]) if value["command"] else "-"
    rows = [
        ("status", value["status"]),
        ("pid", _cell(value["pid"])),
        ("command", command),
        ("port", f"{_cell(value['port'])} (own) · {value['public_port']} (public, shared)"),
        ("url", _cell(value["url"])),
        ("uptime", format_duration(value["uptime_s"])),
        ("restarts", str(value["restarts"])),
        ("last exit", _cell(value["last_exit"])),
        ("reason", _cell(value["reason"])),
        ("memory", format_bytes(value["rss_bytes"])),
        ("cpu", "-" if value["cpu_percent"] is None else f"{value['cpu_percent']:.1f}%"),
        ("sockets", _cell(value["sockets"])),
        ("logs", "\n".join(value["logs"])),
    ]
    for field, cell in rows:
        table.add_row(field, Text(cell))
    history = Table(title=Text("starts and exits (from the supervisor)"), title_justify="left")
    history.add_column("at")
    history.add_column("event")
    for event in value["history"]:
        history.add_row(event["at"][:19].replace("T", " "), Text(event["event"]))
    return Group(table, history)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)
