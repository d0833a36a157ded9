"""The user table, the record the rest of sioplay sees, and the rules for a user's name."""

from __future__ import annotations

import dataclasses

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sioplay.common.names import normalized
from sioplay.errors import ValidationError

__all__ = ["NAME_MAX_CHARS", "SEED_USERS", "Base", "User", "UserRecord", "id_user_order", "validate_name"]

NAME_MAX_CHARS = 255


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id_user: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_CHARS))


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    id_user: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"id_user": self.id_user, "name": self.name}


SEED_USERS: tuple[UserRecord, ...] = tuple(
    UserRecord(str(number), name)
    for number, name in enumerate(
        ("John", "Mary", "Mike", "Frank", "Stephanie", "Richard", "Sonia", "Charlie", "Rowan", "Victoria"), start=1
    )
)


def id_user_order(id_user: str) -> str:
    """A string whose plain order is the order users are listed in: numeric ids by value, then the others.

    A string, not a tuple, so that the roster's sort keys compare in C.
    """
    if id_user.isascii() and id_user.isdigit():
        digits = id_user.lstrip("0") or "0"
        return f"0{len(digits):03d}{digits}\x00{id_user}"
    return f"1{id_user}"


def validate_name(raw: object) -> str:
    """``raw`` trimmed and in NFC, if it is an acceptable user name (`sioplay.common.names`); else ValidationError."""
    if not isinstance(raw, str):
        raise ValidationError(f"name must be a string, not {type(raw).__name__}")
    name = normalized(raw.strip(), "name must not contain")
    if not name:
        raise ValidationError("name must not be empty")
    if len(name) > NAME_MAX_CHARS:
        raise ValidationError(f"name must be at most {NAME_MAX_CHARS} characters, not {len(name)}")
    return name
