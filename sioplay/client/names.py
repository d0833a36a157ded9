"""Hydration: id_user -> name, fetched with GET /users/{id} as the original's client did, and cached."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from sioplay.client.http import Api

__all__ = ["NameCache"]


class NameCache:
    """Names by id_user; None for a user the database does not know.

    `forget` one user on identity-change, or everyone to re-hydrate a whole roster.
    """

    def __init__(self, api: Api, concurrency: int = 16) -> None:
        self.api = api
        self._names: dict[str, str | None] = {}
        self._gate = asyncio.Semaphore(concurrency)

    async def get(self, id_user: str) -> str | None:
        if id_user not in self._names:
            async with self._gate:
                user = await self.api.user(id_user)
            self._names[id_user] = user.get("name") if isinstance(user, dict) else None
        return self._names[id_user]

    async def hydrate(self, ids: Iterable[str]) -> dict[str, str | None]:
        unique = list(dict.fromkeys(ids))
        names = await asyncio.gather(*(self.get(id_user) for id_user in unique))
        return dict(zip(unique, names, strict=True))

    def forget(self, id_user: str | None = None) -> None:
        if id_user is None:
            self._names.clear()
        else:
            self._names.pop(id_user, None)
