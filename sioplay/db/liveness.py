"""Whether the database a node writes to is still the one it opened.

A SQLite file deleted or replaced under a running cluster is silent: a pooled
connection keeps writing to the deleted inode (a write nobody will ever read),
and a new connection creates an empty file. So the file's identity (device and
inode) is taken when the node first sees it and compared before and after every
write and at every readiness check. A replacement that holds the users table
(`sioplay db reset`, a restored backup) is adopted after the pool is emptied; a
missing or foreign file is reported. PostgreSQL is checked with a round trip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sioplay.db.engine import database_errors
from sioplay.db.url import async_url, hide_password
from sioplay.errors import DatabaseError

__all__ = ["DatabaseCheck", "FileIdentity", "FileChangedError", "sqlite_path"]

CHECK_TIMEOUT_S = 2.0


class FileChangedError(DatabaseError):
    """The SQLite file is not the one the node opened; the message names the file, not its directory."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileIdentity:
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(stat.st_dev, stat.st_ino)


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite URL; None for another database, an in-memory one or a URI."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    database = parsed.database
    return Path(database).expanduser().resolve() if database and database != ":memory:" else None


def _has_users_table(path: Path) -> bool:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return False
    try:
        row = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return row is not None


class DatabaseCheck:
    """`check()` raises DatabaseError with the reason while the database cannot be trusted with a write."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self._url = url
        self.path = sqlite_path(url)
        self.identity = FileIdentity.of(self.path) if self.path is not None else None
        self._adopting = asyncio.Lock()

    def file_problem(self) -> str | None:
        """Why the SQLite file is not the one opened (a stat, no I/O on the database); None when it is."""
        if self.path is None or self.identity is None:
            return None
        now = FileIdentity.of(self.path)
        if now is None:
            return f"the SQLite file {self.path.name} was deleted"
        if now != self.identity:
            return f"the SQLite file {self.path.name} was replaced"
        return None

    async def check(self) -> None:
        if self.path is not None:
            await self._check_file()
        with database_errors(self._url, "reach"):
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S), self._engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            except TimeoutError:
                raise DatabaseError(
                    f"cannot reach {hide_password(self._url)}: no answer within {CHECK_TIMEOUT_S:g} s"
                ) from None

    async def _check_file(self) -> None:
        assert self.path is not None
        if self.identity is None:
            # The node started before the file existed: the first one seen is the one it uses.
            self.identity = FileIdentity.of(self.path)
            if self.identity is None:
                raise FileChangedError(f"the SQLite file {self.path.name} does not exist")
        problem = self.file_problem()
        if problem is None:
            return
        async with self._adopting:
            problem = self.file_problem()
            if problem is None:
                return
            now = FileIdentity.of(self.path)
            if now is None or not await asyncio.to_thread(_has_users_table, self.path):
                raise FileChangedError(problem + ("" if now is None else " by a file without the users table"))
            # Every pooled connection still points at the old file.
            await self._engine.dispose()
            self.identity = now
