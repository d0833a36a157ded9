"""The roster protocol on the bus: which request gets which reply, what their bodies hold, how they are checked.

    roster-request  {"room": "Maths", "have": {"<instance>": <version>, …}}
    roster-reply    {"room": "Maths", "version": 41, "members": [["<id_socket>", "<id_user>"], …]}
                    {"room": "Maths", "version": 41, "unchanged": true}
    rooms-request   {}
    rooms-reply     {"rooms": {"Maths": ["<id_user>", …], …}}

The `replica` roster mode adds a node's whole part, and each change to it:

    part-request    {}                       (on the node's own channel: only it answers)
    part-reply      {"seq": 57, "rooms": {"Maths": {"version": 41, "members": [["<id_socket>", "<id_user>"], …]}, …}}
    part-delta      {"seq": 58, "room": "Maths", "socket": ["<id_socket>", "<id_user>"], "joined": true}

`seq` is the version of the node's whole part (`LocalSockets.changes`): one
more at each join or leave, so a replica that sees a number skipped knows it
missed a delta; heartbeats carry it too (see `bus_message`).

A roster request says which version of each node's part of the room the
requester already holds (`have`, by instance); a node whose part is still that
version answers "unchanged" instead of its members, so a large room crosses
Redis only when it has changed. Bodies are built here and checked here on
receipt (`BODY_CHECKS`), before any handler sees them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import orjson

from sioplay.errors import BusError, ValidationError
from sioplay.node.validation import validate_id_user, validate_room

__all__ = [
    "BODY_CHECKS",
    "INSTANCE",
    "MAX_HAVE_ENTRIES",
    "part_delta",
    "part_reply",
    "REPLY_KIND",
    "ReplyKind",
    "RequestKind",
    "rooms_reply",
    "roster_reply",
    "roster_request",
    "matching",
    "unchanged_reply",
]

RequestKind = Literal["roster-request", "rooms-request", "part-request"]
ReplyKind = Literal["roster-reply", "rooms-reply", "part-reply"]
REPLY_KIND: dict[str, ReplyKind] = {
    "roster-request": "roster-reply",
    "rooms-request": "rooms-reply",
    "part-request": "part-reply",
}

# What ids from other nodes may be: they reach rosters, headers and log lines.
INSTANCE = re.compile(r"[0-9a-f]{16}")
SOCKET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A cluster has a handful of nodes; this only bounds what a stranger can make a node read.
MAX_HAVE_ENTRIES = 256


def roster_request(room: str, have: dict[str, int]) -> dict[str, Any]:
    return {"room": room, "have": have}


def roster_reply(room: str, version: int, members_json: orjson.Fragment) -> dict[str, Any]:
    """`members_json`: [[id_socket, id_user], …] already serialized, in roster order."""
    return {"room": room, "version": version, "members": members_json}


def unchanged_reply(room: str, version: int) -> dict[str, Any]:
    return {"room": room, "version": version, "unchanged": True}


def rooms_reply(rooms: dict[str, list[str]]) -> dict[str, Any]:
    return {"rooms": rooms}


def part_reply(seq: int, rooms: dict[str, tuple[int, list[list[str]]]]) -> dict[str, Any]:
    """`rooms`: room -> (its version, its members as [[id_socket, id_user], …])."""
    return {
        "seq": seq,
        "rooms": {room: {"version": version, "members": members} for room, (version, members) in rooms.items()},
    }


def part_delta(seq: int, room: str, id_socket: str, id_user: str, joined: bool) -> dict[str, Any]:
    return {"seq": seq, "room": room, "socket": [id_socket, id_user], "joined": joined}


def matching(value: object, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise BusError(f"{what} is not a valid {what}")
    return value


def _check_id_user(value: object) -> None:
    try:
        valid = validate_id_user(value)
    except ValidationError:
        valid = None
    if valid != value:
        raise BusError("id_user is not a valid id_user")


def _check_room(body: dict[str, Any]) -> None:
    try:
        validate_room(body.get("room"))
    except ValidationError as exc:
        raise BusError(f"bad room: {exc}") from None


def _check_version(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BusError("a version must be a non-negative integer")


def _check_roster_request(body: dict[str, Any]) -> None:
    _check_room(body)
    have = body.get("have", {})
    if not isinstance(have, dict) or len(have) > MAX_HAVE_ENTRIES:
        raise BusError(f"have must be an object of at most {MAX_HAVE_ENTRIES} versions")
    for instance, version in have.items():
        matching(instance, "instance", INSTANCE)
        _check_version(version)


def _check_member(member: object) -> None:
    if not isinstance(member, list) or len(member) != 2:
        raise BusError("each member must be [id_socket, id_user]")
    matching(member[0], "id_socket", SOCKET_ID)
    _check_id_user(member[1])


def _check_members(members: object) -> None:
    if not isinstance(members, list):
        raise BusError("members must be a list")
    for member in members:
        _check_member(member)


def _check_roster_reply(body: dict[str, Any]) -> None:
    _check_room(body)
    _check_version(body.get("version"))
    if body.get("unchanged") is True:
        return
    _check_members(body.get("members"))


def _check_part_reply(body: dict[str, Any]) -> None:
    _check_version(body.get("seq"))
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise BusError("rooms must be an object")
    for room, part in rooms.items():
        _check_room({"room": room})
        if not isinstance(part, dict):
            raise BusError("each room's part must be an object")
        _check_version(part.get("version"))
        _check_members(part.get("members"))


def _check_part_delta(body: dict[str, Any]) -> None:
    _check_version(body.get("seq"))
    _check_room(body)
    _check_member(body.get("socket"))
    if not isinstance(body.get("joined"), bool):
        raise BusError("joined must be true or false")


def _check_rooms_reply(body: dict[str, Any]) -> None:
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise BusError("rooms must be an object")
    for room, users in rooms.items():
        _check_room({"room": room})
        if not isinstance(users, list):
            raise BusError("each room must list the id_user of every socket")
        for id_user in users:
            _check_id_user(id_user)


def _nothing(body: dict[str, Any]) -> None:
    return None


BODY_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "roster-request": _check_roster_request,
    "roster-reply": _check_roster_reply,
    "rooms-request": _nothing,
    "rooms-reply": _check_rooms_reply,
    "part-request": _nothing,
    "part-reply": _check_part_reply,
    "part-delta": _check_part_delta,
}
