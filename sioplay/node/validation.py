"""Checks on what clients send: room names and identities."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from sioplay.errors import ValidationError

__all__ = ["MAX_ID_USER_LENGTH", "MAX_ROOM_LENGTH", "connect_params", "validate_id_user", "validate_room"]

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


def connect_params(query_string: str, auth: object) -> tuple[str, str]:
    """(id_user, room) from the `auth` payload, falling back to the query string."""
    query = {key: values[0] for key, values in parse_qs(query_string or "", keep_blank_values=True).items()}
    auth_map: Mapping[str, Any] = auth if isinstance(auth, Mapping) else {}
    id_user = validate_id_user(auth_map.get("id_user", query.get("id_user")))
    room = validate_room(auth_map.get("room", query.get("room")))
    return id_user, room
