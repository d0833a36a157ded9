"""Requests from the CLI to a running supervisor, as files in the state directory.

The CLI drops ``requests/<id>.request.json``; the supervisor picks requests up
on its next tick, one at a time, and answers with ``<id>.reply.json``. Files
survive either side restarting and need no socket to clean up.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from sioplay.common.pids import alive
from sioplay.common.state import ClusterState, cluster_dir, write_json_atomic
from sioplay.errors import ClusterError

__all__ = ["Action", "ControlReply", "Request", "ask", "clear_requests", "reply", "take_requests"]

Action = Literal["restart", "scale", "stop", "start"]
_REQUEST = ".request.json"
_REPLY = ".reply.json"
_POLL_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    action: Action
    node: str | None = None  # restart: one node, or all when None; stop, start: the node
    nodes: int | None = None  # scale: the new number of nodes
    id: str | None = None  # None for requests that need no reply (SIGHUP, memory ceiling)

    @classmethod
    def from_json(cls, value: Any) -> Request:
        if not isinstance(value, dict) or value.get("action") not in get_args(Action):
            raise ValueError(f"not a request: {value!r}"[:200])
        node, nodes, request_id = value.get("node"), value.get("nodes"), value.get("id")
        if not (node is None or isinstance(node, str)) or not (nodes is None or isinstance(nodes, int)):
            raise ValueError(f"bad request fields: {value!r}"[:200])
        return cls(value["action"], node, nodes, request_id if isinstance(request_id, str) else None)


@dataclasses.dataclass(frozen=True, slots=True)
class ControlReply:
    ok: bool
    message: str


def _requests_dir(home: Path) -> Path:
    return cluster_dir(home) / "requests"


def ask(home: Path, state: ClusterState, request: Request, timeout: float) -> ControlReply:
    """Send `request` to the supervisor of `state` and wait for its reply."""
    request_id = uuid.uuid4().hex
    folder = _requests_dir(home)
    write_json_atomic(folder / f"{request_id}{_REQUEST}", {**dataclasses.asdict(request), "id": request_id})
    reply_path = folder / f"{request_id}{_REPLY}"
    deadline = time.monotonic() + timeout
    while not reply_path.exists():
        if not alive(state.supervisor):
            raise ClusterError(f"the supervisor (pid {state.supervisor.pid}) stopped before answering")
        if time.monotonic() > deadline:
            raise ClusterError(f"no answer from the supervisor within {timeout:g} s; it may still be working on it")
        time.sleep(_POLL_S)
    value = orjson.loads(reply_path.read_bytes())
    reply_path.unlink(missing_ok=True)
    return ControlReply(bool(value["ok"]), str(value["message"]))


def take_requests(home: Path) -> list[Request | str]:
    """Pending requests, oldest first, removed from the directory; a malformed one comes back as its error."""
    folder = _requests_dir(home)
    if not folder.is_dir():
        return []
    taken: list[Request | str] = []
    for path in sorted(folder.glob(f"*{_REQUEST}"), key=lambda item: item.stat().st_mtime_ns):
        try:
            taken.append(Request.from_json(orjson.loads(path.read_bytes())))
        except (orjson.JSONDecodeError, ValueError) as exc:
            taken.append(f"ignored {path.name}: {exc}")
        path.unlink(missing_ok=True)
    return taken


def reply(home: Path, request_id: str, ok: bool, message: str) -> None:
    write_json_atomic(_requests_dir(home) / f"{request_id}{_REPLY}", {"ok": ok, "message": message})


def clear_requests(home: Path) -> None:
    """Forget requests and replies left by an earlier supervisor."""
    folder = _requests_dir(home)
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
