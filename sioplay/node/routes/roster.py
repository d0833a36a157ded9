"""`/{room}/users`, `/rooms/{room}` and `/rooms`: the cluster-wide answers as HTTP bodies and headers.

Every answer says how complete it is, in its body and in `X-Sioplay-*`
headers, so that the original's bare list (`/{room}/users`) can say it too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from sioplay.common.node_counts import answer_summary
from sioplay.errors import ValidationError
from sioplay.node.cluster_roster import Completeness, RoomRoster, RoomsSummary, RosterService
from sioplay.node.roster_parts import Entry
from sioplay.node.routes.responses import json_response
from sioplay.node.validation import validate_room

__all__ = ["completeness_headers", "room_body", "rooms_body", "roster_routes", "socket_list_json"]


def summary_of(completeness: Completeness) -> str:
    return answer_summary(len(completeness.answered), completeness.expected, completeness.missing)


def completeness_headers(completeness: Completeness) -> dict[str, str]:
    headers = {
        "X-Sioplay-Complete": "true" if completeness.complete else "false",
        "X-Sioplay-Nodes-Expected": str(completeness.expected),
        "X-Sioplay-Nodes-Answered": str(len(completeness.answered)),
        "X-Sioplay-Nodes-Missing": ",".join(completeness.missing),
        "X-Sioplay-Took-Ms": f"{completeness.took_ms:.3f}",
        "X-Sioplay-Nodes-Summary": summary_of(completeness),
    }
    if completeness.error:
        headers["X-Sioplay-Error"] = completeness.error.encode("ascii", "replace").decode()[:200]
    return headers


def nodes_json(completeness: Completeness) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "expected": completeness.expected,
        "answered": completeness.answered,
        "missing": completeness.missing,
        "summary": summary_of(completeness),
    }
    if completeness.error:
        nodes["error"] = completeness.error
    return nodes


def socket_list_json(entries: Sequence[Entry]) -> bytes:
    """The original's `/{room}/users` body: `[{id_socket, id_user}]`."""
    return orjson.dumps([{"id_socket": id_socket, "id_user": id_user} for _, id_socket, id_user, _ in entries])


def room_body(roster: RoomRoster, group_by_user: bool = False) -> dict[str, Any]:
    """The `/rooms/{room}` body: every socket with its user and node, or every user with its sockets."""
    users: list[dict[str, Any]]
    if group_by_user:
        grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
        for _, id_socket, id_user, node in roster.entries:
            grouped[id_user].append({"id_socket": id_socket, "node": node})
        users = [{"id_user": id_user, "sockets": sockets} for id_user, sockets in grouped.items()]
    else:
        users = [
            {"id_socket": id_socket, "id_user": id_user, "node": node} for _, id_socket, id_user, node in roster.entries
        ]
    return {
        "room": roster.room,
        "users": users,
        "sockets": len(roster.entries),
        "unique_users": len({id_user for _, _, id_user, _ in roster.entries}),
        "complete": roster.completeness.complete,
        "nodes": nodes_json(roster.completeness),
        "took_ms": roster.completeness.took_ms,
    }


def rooms_body(summary: RoomsSummary) -> dict[str, Any]:
    return {
        "rooms": [
            {"room": room, "sockets": len(users), "unique_users": len(set(users))}
            for room, users in sorted(summary.rooms.items())
        ],
        "complete": summary.completeness.complete,
        "nodes": nodes_json(summary.completeness),
        "took_ms": summary.completeness.took_ms,
    }


def room_from(request: web.Request) -> str:
    return validate_room(request.match_info["room"])


def timeout_from(request: web.Request, default_s: float) -> float:
    raw = request.query.get("timeout_ms")
    if raw is None:
        return default_s
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"timeout_ms must be an integer, not {raw[:20]!r}") from None
    if not 1 <= value <= 60_000:
        raise ValidationError(f"timeout_ms must be between 1 and 60000, not {value}")
    return value / 1000


def flag_from(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("", "1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValidationError(f"{name} must be 1 or 0, not {raw[:20]!r}")


def roster_routes(roster: RosterService, default_timeout_s: float) -> list[web.RouteDef]:
    async def room_users(request: web.Request) -> web.Response:
        result = await roster.roster(room_from(request), timeout_from(request, default_timeout_s))
        # Serialized once per state of the room: a large room that has not changed costs no JSON.
        body = result.serialized.get("socket-list")
        if body is None:
            body = result.serialized["socket-list"] = socket_list_json(result.entries)
        return web.Response(
            body=body, content_type="application/json", headers=completeness_headers(result.completeness)
        )

    async def room(request: web.Request) -> web.Response:
        group = request.query.get("group")
        if group not in (None, "user", "socket"):
            raise ValidationError(f"group must be 'user' or 'socket', not {group[:20]!r}")
        strict = flag_from(request, "strict")
        result = await roster.roster(room_from(request), timeout_from(request, default_timeout_s))
        body = room_body(result, group_by_user=group == "user")
        headers = completeness_headers(result.completeness)
        if strict and not result.completeness.complete:
            missing = ", ".join(result.completeness.missing) or "none"
            body = {"error": f"roster incomplete (missing: {missing})", "status": 503, **body}
            return json_response(body, status=503, headers=headers)
        return json_response(body, headers=headers)

    async def rooms(request: web.Request) -> web.Response:
        result = await roster.rooms(timeout_from(request, default_timeout_s))
        return json_response(rooms_body(result), headers=completeness_headers(result.completeness))

    return [
        web.get("/rooms", rooms),
        web.get("/rooms/{room}", room),
        web.get("/{room}/users", room_users),
    ]
