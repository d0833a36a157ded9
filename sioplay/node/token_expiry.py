"""When each socket's token runs out: one heap and one task per node, not a timer per socket.

A refresh pushes a later deadline for the socket; the earlier entry is left in
the heap and skipped when it comes up, as it no longer matches the socket's
current deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenExpiry"]

log = logging.getLogger(__name__)


class TokenExpiry:
    """Calls `on_expired(sid)` once a socket's deadline (a `time.time()` value) has passed."""

    def __init__(self, on_expired: Callable[[str], Awaitable[None]]) -> None:
        self._on_expired = on_expired
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def set(self, sid: str, deadline: float) -> None:
        self._deadlines[sid] = deadline
        heapq.heappush(self._heap, (deadline, sid))
        # Refreshes and early disconnects leave stale entries; past twice the live ones, the heap is rebuilt.
        if len(self._heap) > 2 * len(self._deadlines) + 1024:
            self._heap = [(when, key) for key, when in self._deadlines.items()]
            heapq.heapify(self._heap)
        self._changed.set()

    def deadline(self, sid: str) -> float | None:
        return self._deadlines.get(sid)

    def forget(self, sid: str) -> None:
        self._deadlines.pop(sid, None)

    def __len__(self) -> int:
        return len(self._deadlines)

    def _due(self, now: float) -> list[str]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            deadline, sid = heapq.heappop(self._heap)
            if self._deadlines.get(sid) == deadline:
                del self._deadlines[sid]
                due.append(sid)
        return due

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            for sid in self._due(time.time()):
                try:
                    await self._on_expired(sid)
                except Exception:
                    log.exception("dropping socket %s at its token's expiry failed", sid)
            wait_s = self._heap[0][0] - time.time() if self._heap else None
            if wait_s is not None and wait_s <= 0:
                continue
            try:
                async with asyncio.timeout(wait_s):
                    await self._changed.wait()
            except TimeoutError:
                pass
