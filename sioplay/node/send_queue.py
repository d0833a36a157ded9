"""A socket's queue of packets to send, as small as an idle socket allows.

engine.io gives every socket an `asyncio.Queue`: four deques (items, getters,
putters, and the waiters of its `join` event) of about 0.75 KiB each, made up
front and kept for the socket's life, 3 KiB of a connection's 31 KiB of Python
heap. This queue has `asyncio.Queue`'s interface as engine.io and the room
broadcaster use it (unbounded, FIFO, `task_done`/`join`), and makes each part
only while it is in use: the items while some are queued, a waiting reader's
future while it waits, the join future while someone joins.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["SendQueue"]

T = TypeVar("T")


class SendQueue(Generic[T]):
    __slots__ = ("_getters", "_items", "_joined", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joined: asyncio.Future[None] | None = None
        self._unfinished = 0

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._unfinished += 1
        self._wake_getter()

    async def put(self, item: T) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    async def get(self) -> T:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                self._forget(getter)
                # Woken, then cancelled: the item it was woken for goes to the next reader.
                if self._items and not getter.cancelled():
                    self._wake_getter()
                raise
            self._forget(getter)
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joined is not None:
            joined, self._joined = self._joined, None
            if not joined.done():
                joined.set_result(None)

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        if self._joined is None:
            self._joined = asyncio.get_running_loop().create_future()
        # Shielded: one joiner cancelled leaves the others waiting.
        await asyncio.shield(self._joined)

    def _wake_getter(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return

    def _forget(self, getter: asyncio.Future[None]) -> None:
        if self._getters is not None:
            if getter in self._getters:
                self._getters.remove(getter)
            if not self._getters:
                self._getters = None
