"""Checks on what clients send: room names and identities."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import parse_qs

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


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def validate_room(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("room name is missing or empty")
    if len(raw) > MAX_ROOM_LENGTH:
        raise ValidationError(f"room name is longer than {MAX_ROOM_LENGTH} characters ({len(raw)})")
    if _has_control_characters(raw):
        raise ValidationError("room name contains control characters")
    return raw


def validate_id_user(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("id_user is missing: connect with ?id_user=N (query) or auth {id_user: N}")
    if len(raw) > MAX_ID_USER_LENGTH or _has_control_characters(raw):
        raise ValidationError(f"id_user {raw[:MAX_ID_USER_LENGTH]!r} is not a valid id")
    return raw.strip()


def _connect_value(query_string: str, auth: object, name: str) -> object:
    """`name` from the `auth` payload, falling back to the query string."""
    if isinstance(auth, Mapping) and name in auth:
        return auth[name]
    values = parse_qs(query_string or "", keep_blank_values=True).get(name)
    return values[0] if values else None


def connect_params(query_string: str, auth: object) -> tuple[str, str]:
    """(id_user, room) of a client joining a room."""
    return validate_id_user(_connect_value(query_string, auth, "id_user")), watch_params(query_string, auth)


def watch_params(query_string: str, auth: object) -> str:
    """The room an observer (`sioplay who --watch`) watches."""
    return validate_room(_connect_value(query_string, auth, "room"))
