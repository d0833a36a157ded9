"""`sioplay bench join-storm`: M clients join one room as fast as the concurrency allows.

Every join is told to everyone already in the room, so a storm of M joins is at
least M*(M-1)/2 `socket-connected` deliveries: for any two clients, the later
one's join reaches the earlier one (two joins racing on different nodes can
reach each other, so a few more are possible). The storm is over when every
client has connected and the clients have heard that many room events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import aiohttp
from rich.progress import Progress

from sioplay.bench.clients import BenchClients
from sioplay.bench.fleet import Fleet, bench_progress, cpu_seconds, shown_fleet
from sioplay.bench.memory import rss_bytes
from sioplay.bench.rooms import roster_exact_everywhere
from sioplay.errors import ClientError
from sioplay.settings import Settings

__all__ = ["JoinStormFigures", "run_join_storm_bench"]

ROOM = "Maths"
# How often the progress bar shows the deliveries heard; the end of the storm is noticed at once, not on a tick.
SHOW_S = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class JoinStormFigures:
    """One storm. Times count from the first connect; CPU is the nodes' and Redis's.

    `node_rss_kb_per_client` is the growth of the node processes' resident memory
    (Redis excluded: room membership lives in the nodes) from right before the
    storm to once all clients are connected and every delivery heard, divided by
    the clients. `drops` are unexpected disconnects by reason; `exact` says there
    were none and every node's roster of the room was complete and exact after.
    """

    nodes: int
    clients: int
    concurrency: int
    connected_s: float
    delivered_s: float
    deliveries: int
    deliveries_expected: int
    deliveries_per_s: float
    cpu_s: float
    cpu_ms_per_join: float
    node_rss_kb_per_client: float
    drops: dict[str, int]
    exact: bool


async def _until_heard(pool: BenchClients, target: int, deadline: float, show: Callable[[], None]) -> None:
    """Until the clients have heard `target` events, or one dropped; TimeoutError at `deadline` (loop time)."""
    waiting = asyncio.create_task(pool.wait_heard(target, deadline - asyncio.get_running_loop().time()))
    try:
        while not waiting.done():
            show()
            await asyncio.wait([waiting], timeout=SHOW_S)
    finally:
        waiting.cancel()
    show()
    waiting.result()


async def _storm(
    running: Fleet, clients: int, concurrency: int, timeout_s: float, progress: Progress
) -> JoinStormFigures:
    target = clients * (clients - 1) // 2
    node_pids = running.node_pids()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=running.ssl_context or True)
    ) as session:
        pool = BenchClients(
            running.urls,
            ssl_context=running.ssl_context,
            token_for=running.token_for,
            room_of=lambda _: ROOM,
            concurrency=concurrency,
        )
        try:
            rss_before = rss_bytes(node_pids)
            cpu_before = cpu_seconds(running.pids())
            started = time.perf_counter()
            deadline = asyncio.get_running_loop().time() + timeout_s
            connecting = progress.add_task(f"connecting {clients} clients to {ROOM}", total=clients)
            try:
                async with asyncio.timeout_at(deadline):
                    await pool.grow_to(clients, lambda: progress.advance(connecting))
                connected_s = time.perf_counter() - started
                progress.remove_task(connecting)
                delivering = progress.add_task("socket-connected deliveries heard", total=target)
                await _until_heard(pool, target, deadline, lambda: progress.update(delivering, completed=pool.heard))
            except TimeoutError:
                raise ClientError(
                    f"the join storm was not over in {timeout_s:g} s: {len(pool.members)}/{clients} connected,"
                    f" {pool.heard}/{target} deliveries heard"
                ) from None
            delivered_s = time.perf_counter() - started
            cpu_used = cpu_seconds(running.pids()) - cpu_before
            rss_growth = rss_bytes(node_pids) - rss_before
            expected = pool.expected(ROOM)
            exact = pool.dropped == 0 and await roster_exact_everywhere(session, running.urls, ROOM, expected)
            return JoinStormFigures(
                nodes=len(running.urls),
                clients=clients,
                concurrency=concurrency,
                connected_s=round(connected_s, 3),
                delivered_s=round(delivered_s, 3),
                deliveries=pool.heard,
                deliveries_expected=target,
                deliveries_per_s=round(pool.heard / delivered_s, 1),
                cpu_s=round(cpu_used, 3),
                cpu_ms_per_join=round(cpu_used * 1000 / clients, 3),
                node_rss_kb_per_client=round(rss_growth / 1024 / clients, 2),
                drops=dict(pool.drops),
                # A drop after the checks would still have made the figures those of a smaller room.
                exact=exact and pool.dropped == 0,
            )
        finally:
            await pool.close()


def run_join_storm_bench(
    settings: Settings, nodes: int = 4, clients: int = 2000, concurrency: int = 100, timeout_s: float = 300.0
) -> JoinStormFigures:
    """A fresh Redis, database and `nodes` nodes, then `clients` clients joining one room at once."""
    with bench_progress() as progress:
        with shown_fleet(progress, nodes, settings, clients) as running:
            return asyncio.run(_storm(running, clients, concurrency, timeout_s, progress))
