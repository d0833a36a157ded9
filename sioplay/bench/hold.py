"""`sioplay bench hold`: many clients spread over many rooms, held connected for a while.

While they are held, the rosters of all rooms are checked round after round,
each check asking the next node in turn; at the end every room is checked from
every node. A check is exact when the node's answer is complete and lists
exactly the clients the bench still holds in that room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable

import aiohttp
from rich.progress import Progress

from sioplay.bench.clients import BenchClients
from sioplay.bench.fleet import Fleet, bench_progress, cpu_seconds, shown_fleet
from sioplay.bench.memory import rss_bytes
from sioplay.bench.rooms import roster_exact
from sioplay.settings import Settings

__all__ = ["HoldFigures", "run_hold_bench"]

TICK_S = 0.25
# Between two rounds over all rooms, so that the checks stay a small part of the server's work.
ROUND_PAUSE_S = 1.0
FINAL_CHECKS_IN_FLIGHT = 8


def room_name(index: int) -> str:
    return f"room-{index}"


@dataclasses.dataclass(frozen=True, slots=True)
class HoldFigures:
    """One hold. `drops` are unexpected disconnects by reason.

    `checks`/`checks_exact` are the roster checks made while holding,
    `final_checks`/`final_checks_exact` those of every room from every node at
    the end. `node_rss_kb_per_client` is the growth of the node processes'
    resident memory (Redis excluded: room membership lives in the nodes) from
    before the first connect to the end of the hold, divided by the clients.
    `cpu_percent` is the nodes' and Redis's CPU time over the hold as a share
    of one core (it can pass 100), roster checks included.
    """

    nodes: int
    clients: int
    rooms: int
    connect_s: float
    held_s: float
    drops: dict[str, int]
    checks: int
    checks_exact: int
    final_checks: int
    final_checks_exact: int
    node_rss_mb: float
    node_rss_kb_per_client: float
    cpu_percent: float
    exact: bool


@dataclasses.dataclass(slots=True)
class _Tally:
    made: int = 0
    exact: int = 0

    def record(self, exact: bool) -> None:
        self.made += 1
        self.exact += exact


async def _check_rounds(
    session: aiohttp.ClientSession, pool: BenchClients, urls: list[str], rooms: list[str], tally: _Tally
) -> None:
    for round_number in itertools.count():
        # Each round starts one node further on, so that every room is in turn asked of every node.
        for index, room in enumerate(rooms):
            url = urls[(index + round_number) % len(urls)]
            tally.record(await roster_exact(session, url, room, pool.expected(room)))
        await asyncio.sleep(ROUND_PAUSE_S)


async def _hold(
    session: aiohttp.ClientSession,
    pool: BenchClients,
    urls: list[str],
    rooms: list[str],
    duration_s: float,
    show: Callable[[float, _Tally], None],
) -> _Tally:
    """Hold for `duration_s` while checking rosters; a node that cannot be reached ends the hold with its error."""
    tally = _Tally()
    checker = asyncio.create_task(_check_rounds(session, pool, urls, rooms, tally))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while (elapsed := loop.time() - started) < duration_s and not checker.done():
            show(elapsed, tally)
            await asyncio.sleep(min(TICK_S, duration_s - elapsed))
        show(min(loop.time() - started, duration_s), tally)
    finally:
        checker.cancel()
        await asyncio.gather(checker, return_exceptions=True)
    if not checker.cancelled() and (error := checker.exception()) is not None:
        raise error
    return tally


async def _final_checks(
    session: aiohttp.ClientSession, pool: BenchClients, urls: list[str], rooms: list[str]
) -> _Tally:
    tally = _Tally()
    gate = asyncio.Semaphore(FINAL_CHECKS_IN_FLIGHT)

    async def check(url: str, room: str) -> None:
        async with gate:
            tally.record(await roster_exact(session, url, room, pool.expected(room)))

    await asyncio.gather(*(check(url, room) for room in rooms for url in urls))
    return tally


async def _measure(
    running: Fleet, room_count: int, per_room: int, duration_s: float, progress: Progress
) -> HoldFigures:
    clients = room_count * per_room
    rooms = [room_name(index) for index in range(room_count)]
    node_pids = running.node_pids()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=running.ssl_context or True)
    ) as session:
        pool = BenchClients(
            running.urls,
            ssl_context=running.ssl_context,
            token_for=running.token_for,
            room_of=lambda index: room_name(index % room_count),
        )
        try:
            rss_before = rss_bytes(node_pids)
            connecting = progress.add_task(f"connecting {clients} clients to {room_count} rooms", total=clients)
            started = time.perf_counter()
            await pool.grow_to(clients, lambda: progress.advance(connecting))
            connect_s = time.perf_counter() - started
            progress.remove_task(connecting)

            holding = progress.add_task("holding", total=duration_s)

            def show(elapsed: float, tally: _Tally) -> None:
                progress.update(
                    holding,
                    completed=elapsed,
                    description=f"holding: {len(pool.live())} connected, {pool.dropped} dropped,"
                    f" {tally.exact}/{tally.made} roster checks exact",
                )

            cpu_before = cpu_seconds(running.pids())
            held_from = time.perf_counter()
            during = await _hold(session, pool, running.urls, rooms, duration_s, show)
            held_s = time.perf_counter() - held_from
            cpu_used = cpu_seconds(running.pids()) - cpu_before
            rss_after = rss_bytes(node_pids)
            progress.remove_task(holding)

            checking = progress.add_task(f"checking {room_count} rooms on every node", total=None)
            final = await _final_checks(session, pool, running.urls, rooms)
            progress.remove_task(checking)
            return HoldFigures(
                nodes=len(running.urls),
                clients=clients,
                rooms=room_count,
                connect_s=round(connect_s, 3),
                held_s=round(held_s, 3),
                drops=dict(pool.drops),
                checks=during.made,
                checks_exact=during.exact,
                final_checks=final.made,
                final_checks_exact=final.exact,
                node_rss_mb=round(rss_after / 1024 / 1024, 1),
                node_rss_kb_per_client=round((rss_after - rss_before) / 1024 / clients, 2),
                cpu_percent=round(cpu_used * 100 / held_s, 1),
                exact=pool.dropped == 0 and during.exact == during.made and final.exact == final.made,
            )
        finally:
            await pool.close()


def run_hold_bench(
    settings: Settings, nodes: int = 4, rooms: int = 100, per_room: int = 100, duration_s: float = 60.0
) -> HoldFigures:
    """A fresh Redis, database and `nodes` nodes, then `rooms` x `per_room` clients held for `duration_s`."""
    with bench_progress() as progress:
        with shown_fleet(progress, nodes, settings, rooms * per_room) as running:
            return asyncio.run(_measure(running, rooms, per_room, duration_s, progress))
