"""Creating, migrating and resetting the user database, with Alembic on the async engine."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sioplay.db.engine import create_engine, database_errors
from sioplay.db.models import SEED_USERS, Base, User

__all__ = ["VERSION_TABLE", "ensure", "migrate", "reset"]

# Not Alembic's default name: a shared PostgreSQL database may hold another application's alembic_version.
VERSION_TABLE = "sioplay_alembic_version"

_MIGRATIONS = Path(__file__).with_name("migrations")
# Supervisors on several hosts may start against one PostgreSQL at once; they take turns.
_LOCK_KEY = zlib.crc32(b"sioplay.db.schema")

# Alembic keeps the running migration context in module globals: one migration at a time per process.
# Callers on one event loop queue on its asyncio lock (a thread lock would block their shared thread);
# event loops in other threads then queue on the thread lock.
_ALEMBIC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_ALEMBIC_THREAD_LOCK = threading.Lock()

T = TypeVar("T")


async def migrate(target: str | AsyncEngine) -> None:
    """Upgrade the database to the newest schema; a no-op when it is already there."""
    await _run(target, "migrate", _upgrade)


async def reset(target: str | AsyncEngine) -> None:
    """Drop sioplay's tables, recreate them and seed the 10 users."""
    await _run(target, "reset", _reset)


async def ensure(target: str | AsyncEngine) -> bool:
    """Migrate, and seed the 10 users if the users table did not exist; True if it was created."""
    return await _run(target, "prepare", _ensure)


async def _run(target: str | AsyncEngine, doing: str, work: Callable[[Connection], T]) -> T:
    alembic_lock = _ALEMBIC_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with alembic_lock, _engine_for(target) as engine:
        with database_errors(engine.url, doing, also=(CommandError,)):
            async with engine.begin() as conn:
                return await conn.run_sync(_locked, work)


@contextlib.asynccontextmanager
async def _engine_for(target: str | AsyncEngine) -> AsyncIterator[AsyncEngine]:
    if isinstance(target, AsyncEngine):
        yield target
        return
    engine = create_engine(target)
    try:
        yield engine
    finally:
        await engine.dispose()


def _locked(conn: Connection, work: Callable[[Connection], T]) -> T:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    with _ALEMBIC_THREAD_LOCK:
        return work(conn)


def _upgrade(conn: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _seed(conn: Connection) -> None:
    conn.execute(insert(User), [user.as_json() for user in SEED_USERS])


def _reset(conn: Connection) -> None:
    Base.metadata.drop_all(conn)
    conn.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
    _upgrade(conn)
    _seed(conn)


def _ensure(conn: Connection) -> bool:
    created = not inspect(conn).has_table(User.__tablename__)
    _upgrade(conn)
    if created:
        _seed(conn)
    return created
