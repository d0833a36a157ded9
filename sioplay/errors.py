"""sioplay's exceptions.

Every error sioplay raises on purpose derives from :class:`SioplayError`; the CLI
catches that one class at its edge and prints one line. Errors from redis,
SQLAlchemy and aiohttp are mapped to these at the boundary, chained with
``from exc``.

    SioplayError
    ├── ConfigError            a setting has a bad value
    ├── DatabaseError          the user database cannot be reached or used
    │   └── UnknownUserError   no user with that id_user
    ├── ValidationError        input (room name, user fields, JSON) is not acceptable
    │   └── TokenError         a token is missing, expired, badly signed or does not allow this
    ├── RedisError             Redis cannot be started, reached or used
    ├── BusError               a node-to-node message is malformed or cannot be sent
    ├── ClusterError           the supervisor cannot start, stop or find a cluster
    │   └── PortInUseError     a port sioplay needs is taken
    └── ClientError            a simulated client cannot connect or was refused
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ClientError",
    "ClusterError",
    "ConfigError",
    "DatabaseError",
    "PortInUseError",
    "RedisError",
    "SioplayError",
    "TokenError",
    "UnknownUserError",
    "ValidationError",
]


class SioplayError(Exception):
    """Base class of every error sioplay raises on purpose."""


class ConfigError(SioplayError):
    """A setting has a value sioplay cannot use."""


class DatabaseError(SioplayError):
    """The user database cannot be reached or used."""


class UnknownUserError(DatabaseError):
    """No user has the given id_user."""

    def __init__(self, id_user: str) -> None:
        super().__init__(f"unknown id_user {id_user!r}")
        self.id_user = id_user


class ValidationError(SioplayError):
    """Input that sioplay refuses: a bad room name, user field or JSON body."""


class TokenError(ValidationError):
    """A token that proves nothing here; the message says why, never the token."""


class RedisError(SioplayError):
    """Redis cannot be started, reached or used."""


class BusError(SioplayError):
    """A node-to-node message is malformed, too large, or cannot be sent."""


class ClusterError(SioplayError):
    """The supervisor cannot start, stop or find a cluster."""


class PortInUseError(ClusterError):
    """A port sioplay needs is already taken."""


class ClientError(SioplayError):
    """A simulated client cannot connect, or the server refused it."""
