"""cancel_and_wait: a task that loses a cancel is cancelled again; one that never ends is reported."""

from __future__ import annotations

import asyncio

from sioplay.node.tasks import cancel_and_wait


async def _loses_first_cancel(ended: asyncio.Event) -> None:
    # What redis-py's pub/sub read does when a cancel lands as data arrives.
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    try:
        await asyncio.Event().wait()
    finally:
        ended.set()


async def _ignores_cancels(release: asyncio.Event) -> None:
    while not release.is_set():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass


async def test_a_task_that_loses_a_cancel_is_cancelled_again() -> None:
    ended = asyncio.Event()
    task = asyncio.create_task(_loses_first_cancel(ended))
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=5.0) is True
    assert ended.is_set() and task.cancelled()


async def test_a_task_that_never_ends_is_reported_after_the_timeout() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_ignores_cancels(release))
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=0.3) is False
    assert not task.done()
    release.set()
    assert await cancel_and_wait(task, timeout=5.0) is True
