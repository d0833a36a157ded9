"""cancel_and_wait and cancel_all: a task that loses a cancel is cancelled again; one that never ends is reported."""

from __future__ import annotations

import asyncio

from sioplay.tasks import cancel_all, cancel_and_wait


async def _loses_first_cancel(started: asyncio.Event, ended: asyncio.Event) -> None:
    # What redis-py's pub/sub read does when a cancel lands as data arrives.
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    try:
        await asyncio.Event().wait()
    finally:
        ended.set()


async def _ignores_cancels(started: asyncio.Event, release: asyncio.Event) -> None:
    started.set()
    while not release.is_set():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass


async def test_a_task_that_loses_a_cancel_is_cancelled_again() -> None:
    started, ended = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_loses_first_cancel(started, ended))
    await started.wait()
    assert await cancel_and_wait(task, timeout=5.0) is True
    assert ended.is_set() and task.cancelled()


async def test_a_task_that_never_ends_is_reported_after_the_timeout() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_ignores_cancels(started, release))
    await started.wait()
    assert await cancel_and_wait(task, timeout=0.3) is False
    assert not task.done()
    release.set()
    assert await cancel_and_wait(task, timeout=5.0) is True


async def test_cancel_all_waits_for_every_task_and_says_when_one_outlived_the_timeout() -> None:
    quiet = asyncio.create_task(asyncio.Event().wait())
    assert await cancel_all([quiet], timeout=5.0) is True
    assert quiet.cancelled()

    started, release = asyncio.Event(), asyncio.Event()
    stubborn = asyncio.create_task(_ignores_cancels(started, release))
    await started.wait()
    assert await cancel_all([stubborn], timeout=0.3) is False
    release.set()
    assert await cancel_and_wait(stubborn, timeout=5.0) is True
