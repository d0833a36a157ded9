"""Concurrent calls for the same key share one run: at most one running and one queued per key.

Eight requesters asking one node for the same room would otherwise each send
a bus request, and each wakes every node and Redis. Here a call joins a run
only if that run has not started yet, so every answer is computed from a
request sent after the call arrived and sees every change the call could
have been told about before asking:

- no run for the key: the call starts one;
- a run in progress: the call queues the next one, which starts when the
  running one ends, and serves every call that arrives until it starts;
- a run in progress and one queued: the call joins the queued one.

A queued run is given what remains of the deadline of the call that queued
it, so that waiting for the running one does not stretch anybody's deadline
(calls are keyed by their timeout too, so the calls it serves share that
deadline within the time it waited). A caller that gives up (cancelled) does
not cancel the run the others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

# A run queued behind a slow one still asks, for at least this long, rather than giving up unasked.
MIN_TIMEOUT_S = 0.001


class SingleFlight(Generic[K, T]):
    """`call(key, timeout_s)` is `run(key, timeout_s)`, shared as the module docstring says."""

    def __init__(self, run: Callable[[K, float], Awaitable[T]]) -> None:
        self._run = run
        self._running: dict[K, asyncio.Task[T]] = {}
        self._queued: dict[K, asyncio.Task[T]] = {}

    async def call(self, key: K, timeout_s: float) -> T:
        flight = self._queued.get(key)
        if flight is None:
            running = self._running.get(key)
            deadline = asyncio.get_running_loop().time() + timeout_s
            flight = asyncio.ensure_future(self._fly(key, running, deadline))
            if running is None:
                self._running[key] = flight
            else:
                self._queued[key] = flight
        return await asyncio.shield(flight)

    async def _fly(self, key: K, previous: asyncio.Task[T] | None, deadline: float) -> T:
        me = asyncio.current_task()
        assert me is not None
        if previous is not None:
            # Its outcome is its callers'; this run only waits for it to end.
            await asyncio.wait({previous})
            del self._queued[key]
            self._running[key] = me  # type: ignore[assignment]
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            return await self._run(key, max(remaining, MIN_TIMEOUT_S))
        finally:
            if self._running.get(key) is me:
                del self._running[key]
