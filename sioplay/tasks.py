"""Stopping background tasks, including those that may not stop on the first cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["cancel_all", "cancel_and_wait", "report_death"]

log = logging.getLogger(__name__)

_RECANCEL_EVERY_S = 0.2


async def cancel_and_wait(task: asyncio.Task[Any], timeout_s: float) -> bool:
    """Cancel `task` until it has ended; False if it is still running after `timeout_s` seconds.

    A single cancel is not always the end of a task: one that catches
    CancelledError to clean up, or awaits again while cleaning up, goes on
    running, and a cancel that lands while the task is being woken can be lost
    (seen with redis-py's pub/sub reads: node shutdown hung). Cancelling again
    until it is done, within a deadline, ends both without trusting any one
    task's code.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(_RECANCEL_EVERY_S, remaining))
    return True


async def cancel_all(tasks: list[asyncio.Task[Any]], timeout_s: float) -> bool:
    """Cancel every task and wait for them to end; False if some are still running after `timeout_s` seconds.

    `asyncio.wait`, not `gather`: a gather cut short by a timeout cancels its
    tasks again and then waits for them, however long a stubborn one takes.
    """
    if not tasks:
        return True
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        if not task.cancelled():
            # Read, so that a task that failed on its way out is not reported as never retrieved.
            task.exception()
    return not pending


def report_death(task: asyncio.Task[Any], on_death: Callable[[str], None]) -> None:
    """When `task` ends by an exception, log it with its traceback and tell `on_death` why.

    A background task that dies is otherwise noticed by nobody ("Task exception was
    never retrieved" at exit, at best) while the process still looks healthy.
    """

    def ended(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            on_death(f"{done.get_name()} ended")
            return
        log.error("background task %s died: %r", done.get_name(), error, exc_info=error)
        on_death(f"{done.get_name()} died: {type(error).__name__}: {error}")

    task.add_done_callback(ended)
