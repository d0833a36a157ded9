"""Checks on what clients send: room names and identities."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from sioplay.common.names import normalized
from sioplay.errors import ValidationError

__all__ = [
    "MAX_ID_USER_LENGTH",
    "MAX_ROOM_LENGTH",
    "connect_params",
    "validate_id_user",
    "validate_room",
    "watch_params",
]

MAX_ROOM_LENGTH = 64
MAX_ID_USER_LENGTH = 64


def validate_room(raw: object) -> str:
    """The room `raw` names, in NFC; refused, not trimmed, with spaces around it, so that it is not a second room."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("room name is missing or empty")
    room = normalized(raw, "room name contains")
    if len(room) > MAX_ROOM_LENGTH:
        raise ValidationError(f"room name is longer than {MAX_ROOM_LENGTH} characters ({len(room)})")
    if room != room.strip():
        raise ValidationError(f"room name {room!r} starts or ends with whitespace: remove it")
    return room


def validate_id_user(raw: object) -> str:
    """The id `raw` gives, trimmed and in NFC, as the users table holds it."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("id_user is missing: connect with ?id_user=N (query) or auth {id_user: N}")
    if len(raw) > MAX_ID_USER_LENGTH:
        raise ValidationError(f"id_user {raw[:MAX_ID_USER_LENGTH]!r} is not a valid id")
    return normalized(raw, "id_user contains").strip()


def _query(query_string: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(query_string or "", keep_blank_values=True).items()}


def _connect_value(query: Mapping[str, str], auth: object, name: str) -> object:
    """`name` from the `auth` payload, falling back to the query string."""
    if isinstance(auth, Mapping) and name in auth:
        return auth[name]
    return query.get(name)


def connect_params(query_string: str, auth: object) -> tuple[str, str]:
    """(id_user, room) of a client joining a room; the query string is parsed once."""
    query = _query(query_string)
    return validate_id_user(_connect_value(query, auth, "id_user")), validate_room(_connect_value(query, auth, "room"))


def watch_params(query_string: str, auth: object) -> str:
    """The room an observer (`sioplay who --watch`) watches."""
    return validate_room(_connect_value(_query(query_string), auth, "room"))
