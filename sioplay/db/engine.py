"""Async engines for the user database, and the boundary where driver errors become DatabaseError."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sioplay.db.url import async_url, hide_password
from sioplay.errors import ConfigError, DatabaseError

__all__ = ["CONNECT_TIMEOUT_S", "SQLITE_BUSY_TIMEOUT_MS", "create_engine", "database_errors"]

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 10.0

_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def create_engine(url: str, *, search_path: str | None = None) -> AsyncEngine:
    """An async engine for ``url`` (any sqlite:// or postgresql:// spelling).

    ``search_path`` (PostgreSQL only) puts sioplay's tables in that schema instead of the default one.
    """
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() == "sqlite":
        if search_path is not None:
            raise ConfigError("a search_path needs a PostgreSQL database, not SQLite")
        return _sqlite_engine(parsed)
    return _postgresql_engine(parsed, search_path)


@contextlib.contextmanager
def database_errors(url: str | URL, doing: str, *, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Driver and SQLAlchemy errors (and ``also``) raised inside, as one-line DatabaseErrors naming ``url``.

    ``doing`` completes "cannot ... <url>", e.g. ``"migrate"`` or ``"read users from"``.
    """
    try:
        yield
    except (*_DRIVER_ERRORS, *also) as exc:
        raise DatabaseError(f"cannot {doing} {hide_password(url)}: {_reason(exc)}") from exc


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not url.query.get("uri"):
        with database_errors(url, "create the directory of"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Several node processes share the file: WAL lets readers run beside the one writer, and the
    # busy timeout makes a writer wait for the lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _postgresql_engine(url: URL, search_path: str | None) -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if "timeout" not in url.query:
        # asyncpg waits 60 s by default for a host that does not answer.
        connect_args["timeout"] = CONNECT_TIMEOUT_S
    if search_path is not None:
        connect_args["server_settings"] = {"search_path": search_path}
    # Every node holds a pool of its own, and a cluster has several nodes: keep each pool small.
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True, connect_args=connect_args)


def _reason(exc: BaseException) -> str:
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        # SQLAlchemy's asyncpg adapter wraps the asyncpg error, whose message is the useful one.
        cause = exc.orig.__cause__ or exc.orig
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
