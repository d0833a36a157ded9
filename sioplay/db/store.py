"""The users as the server nodes read and rename them, without blocking the event loop."""

from __future__ import annotations

import builtins
from contextlib import AbstractContextManager
from types import TracebackType

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sioplay.db.engine import create_engine, database_errors
from sioplay.db.liveness import DatabaseCheck, FileChangedError
from sioplay.db.models import User, UserRecord, id_user_order, validate_name
from sioplay.errors import UnknownUserError

__all__ = ["UserStore"]


class UserStore:
    """Reads and renames users; database failures surface as DatabaseError.

    Built from a URL it owns its engine and disposes it in :meth:`close`; an engine passed in stays open.
    Reads and renames go only to the SQLite file the store opened (checked before, and for a rename after):
    a file deleted or replaced under it is refused (FileChangedError) until `check` adopts its replacement.
    """

    def __init__(self, target: str | AsyncEngine) -> None:
        self._owns_engine = isinstance(target, str)
        self._engine = create_engine(target) if isinstance(target, str) else target
        self.check = DatabaseCheck(self._engine, target if isinstance(target, str) else str(self._engine.url))

    async def get(self, id_user: str) -> UserRecord:
        self._refuse_if_file_changed()
        with self._errors("read users from"):
            async with self._engine.connect() as conn:
                name = (await conn.execute(select(User.name).where(User.id_user == id_user))).scalar_one_or_none()
        if name is None:
            raise UnknownUserError(id_user)
        return UserRecord(id_user, name)

    async def rename(self, id_user: str, name: object) -> None:
        """Give ``id_user`` a new name, validated first: nothing changes if it is refused."""
        valid = validate_name(name)
        self._refuse_if_file_changed()
        with self._errors("rename a user in"):
            async with self._engine.begin() as conn:
                result = await conn.execute(update(User).where(User.id_user == id_user).values(name=valid))
        # Deleted while the write ran: it may have gone to the old inode, which nobody will read again.
        self._refuse_if_file_changed()
        if result.rowcount == 0:
            raise UnknownUserError(id_user)

    async def list(self) -> builtins.list[UserRecord]:
        """Every user, numeric ids in numeric order first, then the others by string."""
        self._refuse_if_file_changed()
        with self._errors("read users from"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(select(User.id_user, User.name))).all()
        records = (UserRecord(row.id_user, row.name) for row in rows)
        return sorted(records, key=lambda record: id_user_order(record.id_user))

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()

    async def __aenter__(self) -> UserStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _refuse_if_file_changed(self) -> None:
        problem = self.check.file_problem()
        if problem is not None:
            raise FileChangedError(problem)

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return database_errors(self._engine.url, doing)
