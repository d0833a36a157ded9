"""The node-to-node message format: JSON envelopes, validated and size-checked on receipt.

Nothing that arrives over pub/sub is trusted: a message is decoded as JSON
only (never pickle), checked against its kind's shape and bounded in size,
or refused with a BusError that says why (the listener counts and drops it).

    {"v": 2, "kind": "roster-request", "origin": "node-2", "instance": "3f…",
     "request_id": "9a…", "body": {"room": "Maths", "have": {"7c…": 41}}}

A roster request says which version of each node's part of the room the
requester already holds (`have`, by instance); a node whose part is still that
version answers `{"room", "version", "unchanged": true}` instead of its
members, so a large room crosses Redis only when it has changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, get_args

import orjson

from sioplay.errors import BusError, ValidationError
from sioplay.node.validation import MAX_ID_USER_LENGTH, validate_room

__all__ = ["PROTOCOL_VERSION", "Envelope", "Kind", "decode", "encode"]

# 2: roster replies carry their part's version and may say it is unchanged.
PROTOCOL_VERSION = 2
MAX_NAME_LENGTH = 64
MAX_SOCKET_ID_LENGTH = 64
# A cluster has a handful of nodes; this only bounds what a stranger can make a node read.
MAX_HAVE_ENTRIES = 256

Kind = Literal[
    "hello", "heartbeat", "goodbye", "roster-request", "roster-reply", "rooms-request", "rooms-reply"
]
KINDS: frozenset[str] = frozenset(get_args(Kind))
REQUEST_KINDS = frozenset({"roster-request", "rooms-request"})
REPLY_KINDS = frozenset({"roster-reply", "rooms-reply"})


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    origin: str
    instance: str
    body: dict[str, Any]
    request_id: str | None = None


def encode(envelope: Envelope) -> bytes:
    return orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "kind": envelope.kind,
            "origin": envelope.origin,
            "instance": envelope.instance,
            "request_id": envelope.request_id,
            "body": envelope.body,
        }
    )


def decode(raw: bytes | str, max_bytes: int) -> Envelope:
    """The envelope in `raw`, or BusError naming what is wrong with it."""
    if len(raw) > max_bytes:
        raise BusError(f"oversized message ({len(raw)} bytes, limit {max_bytes})")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BusError("message is not JSON") from None
    if not isinstance(data, dict):
        raise BusError("message is not a JSON object")
    if data.get("v") != PROTOCOL_VERSION:
        raise BusError(f"unsupported protocol version {data.get('v')!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise BusError(f"unknown kind {str(kind)[:40]!r}")
    origin = _short_string(data.get("origin"), "origin", MAX_NAME_LENGTH)
    instance = _short_string(data.get("instance"), "instance", MAX_NAME_LENGTH)
    request_id = data.get("request_id")
    if kind in REQUEST_KINDS or kind in REPLY_KINDS:
        request_id = _short_string(request_id, "request_id", MAX_NAME_LENGTH)
    elif request_id is not None:
        raise BusError(f"{kind} carries a request_id")
    body = data.get("body")
    if not isinstance(body, dict):
        raise BusError("body is not an object")
    _BODY_CHECKS[kind](body)
    return Envelope(kind=kind, origin=origin, instance=instance, body=body, request_id=request_id)


def _short_string(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise BusError(f"{what} must be a string of 1-{limit} characters")
    return value


def _check_presence(body: dict[str, Any]) -> None:
    sockets = body.get("sockets", 0)
    if not isinstance(sockets, int) or isinstance(sockets, bool) or sockets < 0:
        raise BusError("sockets must be a non-negative integer")


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
        _short_string(instance, "instance", MAX_NAME_LENGTH)
        _check_version(version)


def _check_roster_reply(body: dict[str, Any]) -> None:
    _check_room(body)
    _check_version(body.get("version"))
    if body.get("unchanged") is True:
        return
    members = body.get("members")
    if not isinstance(members, list):
        raise BusError("members must be a list")
    for member in members:
        if not isinstance(member, list) or len(member) != 2:
            raise BusError("each member must be [id_socket, id_user]")
        _short_string(member[0], "id_socket", MAX_SOCKET_ID_LENGTH)
        _short_string(member[1], "id_user", MAX_ID_USER_LENGTH)


def _check_rooms_reply(body: dict[str, Any]) -> None:
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise BusError("rooms must be an object")
    for room, users in rooms.items():
        _check_room({"room": room})
        if not isinstance(users, list):
            raise BusError("each room must list the id_user of every socket")
        for id_user in users:
            _short_string(id_user, "id_user", MAX_ID_USER_LENGTH)


def _nothing(body: dict[str, Any]) -> None:
    return None


_BODY_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "hello": _check_presence,
    "heartbeat": _check_presence,
    "goodbye": _nothing,
    "roster-request": _check_roster_request,
    "roster-reply": _check_roster_reply,
    "rooms-request": _nothing,
    "rooms-reply": _check_rooms_reply,
}
