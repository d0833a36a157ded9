"""Stopping background tasks, including those that may not stop on the first cancel."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_all", "cancel_and_wait"]

_RECANCEL_EVERY_S = 0.2


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float) -> bool:
    """Cancel `task` until it has ended; False if it is still running after `timeout` seconds.

    A redis-py pub/sub read can lose a cancellation that lands as data arrives
    (seen with redis-py 8.1 and hiredis: the listener stayed "cancelling" inside
    its next socket read and node shutdown hung). Cancelling again interrupts
    the read it went back to.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(_RECANCEL_EVERY_S, remaining))
    return True


async def cancel_all(tasks: list[asyncio.Task[Any]], timeout: float) -> bool:
    """Cancel every task and wait for them to end; False if some are still running after `timeout` seconds.

    `asyncio.wait`, not `gather`: a gather cut short by a timeout cancels its
    tasks again and then waits for them, however long a stubborn one takes.
    """
    if not tasks:
        return True
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in done:
        if not task.cancelled():
            # Read, so that a task that failed on its way out is not reported as never retrieved.
            task.exception()
    return not pending
