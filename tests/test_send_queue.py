"""SendQueue behaves as asyncio.Queue where engine.io and the room broadcaster use it, and holds nothing idle."""

from __future__ import annotations

import asyncio

import pytest

from sioplay.node.send_queue import SendQueue
from tests.helpers import async_wait_until


async def test_items_come_out_in_order_and_an_idle_queue_holds_nothing() -> None:
    queue: SendQueue[int] = SendQueue()
    for item in range(3):
        await queue.put(item)
    assert queue.qsize() == 3 and not queue.empty()
    assert [queue.get_nowait(), await queue.get(), queue.get_nowait()] == [0, 1, 2]
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    assert queue.empty() and queue._items is None and queue._getters is None


async def test_a_waiting_reader_wakes_for_the_next_item() -> None:
    queue: SendQueue[str] = SendQueue()
    reader = asyncio.create_task(queue.get())
    await async_wait_until(lambda: queue._getters, 1, "the reader waiting")
    assert not reader.done()
    queue.put_nowait("frame")
    assert await asyncio.wait_for(reader, 1) == "frame"
    assert queue._getters is None


async def test_a_reader_timed_out_leaves_the_item_for_the_next() -> None:
    queue: SendQueue[str] = SendQueue()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await queue.get()
    assert queue._getters is None, "the cancelled reader is forgotten"
    queue.put_nowait("frame")
    assert await queue.get() == "frame"


async def test_a_reader_woken_then_cancelled_passes_the_item_on() -> None:
    queue: SendQueue[str] = SendQueue()
    first, second = asyncio.create_task(queue.get()), asyncio.create_task(queue.get())
    await async_wait_until(lambda: len(queue._getters or ()) == 2, 1, "both readers waiting")
    queue.put_nowait("frame")
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "frame"
    assert first.cancelled()


async def test_join_waits_until_every_item_is_done() -> None:
    queue: SendQueue[int] = SendQueue()
    await queue.join()  # nothing queued: at once
    queue.put_nowait(1)
    queue.put_nowait(2)
    joiners = [asyncio.create_task(queue.join()) for _ in range(2)]
    # Both start in the loop's turn that makes the first one's future.
    await async_wait_until(lambda: queue._joined is not None, 1, "the joiners waiting")
    joiners[0].cancel()
    queue.get_nowait()
    queue.task_done()
    await async_wait_until(joiners[0].done, 1, "the first joiner cancelled")
    assert not joiners[1].done(), "one item is not done yet, and a cancelled joiner leaves the other waiting"
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joiners[1], 1)
    with pytest.raises(ValueError):
        queue.task_done()
