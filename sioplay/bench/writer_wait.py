"""What one engine.io writer wait costs, with engine.io's own poll and with `patches.QueueSocket`.

`python -m sioplay.bench.writer_wait` under each Python decides whether the
QueueSocket patch pays there: N sockets' writers wait for a packet, one is
queued for each, R times; the figure is microseconds per wait, event loop
included. Only the standard library runs, so any interpreter can run it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

SOCKETS, ROUNDS, TIMEOUT_S, REPEATS = 2000, 100, 30.0, 4

Poll = Callable[["asyncio.Queue[int]"], Awaitable[int]]


async def engineio_poll(queue: asyncio.Queue[int]) -> int:
    packet = await asyncio.wait_for(queue.get(), TIMEOUT_S)
    queue.task_done()
    return packet


async def queue_socket_poll(queue: asyncio.Queue[int]) -> int:
    if queue.empty():
        async with asyncio.timeout(TIMEOUT_S):
            packet = await queue.get()
    else:
        packet = queue.get_nowait()
    queue.task_done()
    return packet


async def microseconds_per_wait(poll: Poll) -> float:
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(SOCKETS)]

    async def writer(queue: asyncio.Queue[int]) -> None:
        for _ in range(ROUNDS):
            await poll(queue)

    writers = [asyncio.create_task(writer(queue)) for queue in queues]
    await asyncio.sleep(0)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for queue in queues:
            queue.put_nowait(1)
        # Two turns of the loop: every writer wakes, takes its packet and waits again.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await asyncio.gather(*writers)
    return (time.perf_counter() - started) / (SOCKETS * ROUNDS) * 1e6


def main() -> None:
    version = sys.version.split()[0]
    for _ in range(REPEATS):
        for name, poll in (("engine.io wait_for", engineio_poll), ("QueueSocket", queue_socket_poll)):
            print(f"Python {version}  {name:18s} {asyncio.run(microseconds_per_wait(poll)):6.2f} µs/wait")


if __name__ == "__main__":
    main()
