"""`sioplay bench roster`: latency, throughput and freshness of the cluster-wide roster query, per roster mode.

Freshness is read-your-join: a client gets its handshake from the first node
and at once asks the second node for the room, again until the answer
includes it; the time from the handshake to that answer, over a few trials.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from pathlib import Path

import aiohttp
from rich.progress import Progress

from sioplay.bench.clients import BenchClients
from sioplay.bench.fleet import Fleet, bench_progress, cpu_seconds, shown_fleet
from sioplay.bench.profile import profiled
from sioplay.bench.rooms import roster_exact_everywhere
from sioplay.client.wire import WireClient
from sioplay.errors import ClientError
from sioplay.settings import Settings

__all__ = ["RosterFigures", "run_roster_bench"]

ROOM = "Maths"
# A join not seen on the other node within this is reported as not seen at all.
FRESHNESS_LIMIT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Freshness:
    """Read-your-join over `trials`: ms from the handshake on one node to an answer including it from another."""

    trials: int
    p50_ms: float
    max_ms: float
    # Trials whose first query on the other node already included the join.
    first_query: int


@dataclasses.dataclass(frozen=True, slots=True)
class RosterFigures:
    nodes: int
    clients: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_s: float
    cpu_ms_per_query: float
    exact: bool
    mode: str = "ask"
    # None with one node: there is no other node to ask.
    freshness: Freshness | None = None


async def _latencies(session: aiohttp.ClientSession, urls: list[str], requests: int) -> list[float]:
    timings: list[float] = []
    for index in range(requests):
        started = time.perf_counter()
        async with session.get(f"{urls[index % len(urls)]}/{ROOM}/users") as response:
            await response.read()
            if response.status != 200 or response.headers.get("X-Sioplay-Complete") != "true":
                reason = response.headers.get("X-Sioplay-Error", "")
                raise ClientError(f"roster request failed: {response.status} {reason}")
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def _throughput(session: aiohttp.ClientSession, urls: list[str], workers: int, duration_s: float) -> int:
    deadline = time.perf_counter() + duration_s
    done = 0

    async def worker(offset: int) -> None:
        nonlocal done
        index = offset
        while time.perf_counter() < deadline:
            async with session.get(f"{urls[index % len(urls)]}/{ROOM}/users") as response:
                await response.read()
            done += 1
            index += 1

    await asyncio.gather(*(worker(offset) for offset in range(workers)))
    return done


async def _read_your_join(session: aiohttp.ClientSession, running: Fleet, trials: int) -> Freshness | None:
    """Join on the first node, ask the second at once and again until its answer includes the join."""
    if len(running.urls) < 2 or trials < 1:
        return None
    joined_at, asked_at = running.urls[0], running.urls[1]
    timings: list[float] = []
    first_query = 0
    for trial in range(trials):
        id_user = str(trial % 10 + 1)
        client = WireClient(joined_at, id_user, ROOM, lambda: None, running.ssl_context, running.token_for(id_user))
        try:
            handshake = await client.connect()
            started = time.perf_counter()
            sid = str(handshake.get("id_socket"))
            queries = 0
            while True:
                queries += 1
                async with session.get(f"{asked_at}/rooms/{ROOM}") as response:
                    body = await response.json()
                if body["complete"] and any(member["id_socket"] == sid for member in body["users"]):
                    break
                if time.perf_counter() - started > FRESHNESS_LIMIT_S:
                    raise ClientError(f"a join on {joined_at} not seen from {asked_at} in {FRESHNESS_LIMIT_S:g} s")
            timings.append((time.perf_counter() - started) * 1000)
            first_query += queries == 1
        finally:
            await client.close()
    return Freshness(trials, round(statistics.median(timings), 3), round(max(timings), 3), first_query)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def _profiling(running: Fleet, profile_dir: Path | None, clients: int) -> contextlib.AbstractContextManager[object]:
    """py-spy on every node during the throughput phase, into `profile_dir/{nodes}n-{clients}/node-N.txt`."""
    if profile_dir is None:
        return contextlib.nullcontext()
    nodes = {f"node-{index}": pid for index, pid in enumerate(running.node_pids(), start=1)}
    return profiled(nodes, profile_dir / f"{len(nodes)}n-{clients}")


async def _measure(
    running: Fleet,
    mode: str,
    client_counts: list[int],
    requests: int,
    workers: int,
    duration_s: float,
    progress: Progress,
    profile_dir: Path | None,
    freshness_trials: int,
) -> list[RosterFigures]:
    figures: list[RosterFigures] = []
    connector = aiohttp.TCPConnector(limit=0, ssl=running.ssl_context or True)
    async with aiohttp.ClientSession(connector=connector) as session:
        pool = BenchClients(
            running.urls, ssl_context=running.ssl_context, token_for=running.token_for, room_of=lambda _: ROOM
        )
        try:
            for count in sorted(client_counts):
                task = progress.add_task(f"connecting {count} clients", total=count, completed=len(pool.members))
                await pool.grow_to(count, lambda: progress.advance(task))
                progress.remove_task(task)
                expected = pool.expected(ROOM)
                exact = pool.dropped == 0 and await roster_exact_everywhere(session, running.urls, ROOM, expected)
                await _latencies(session, running.urls, min(50, requests))
                timings = await _latencies(session, running.urls, requests)
                freshness = await _read_your_join(session, running, freshness_trials)
                with _profiling(running, profile_dir, count):
                    cpu_before = cpu_seconds(running.pids())
                    done = await _throughput(session, running.urls, workers, duration_s)
                    cpu_used = cpu_seconds(running.pids()) - cpu_before
                # A client dropped under load would have made the figures those of a smaller room.
                exact = exact and pool.dropped == 0
                figures.append(
                    RosterFigures(
                        mode=mode,
                        nodes=len(running.urls),
                        clients=count,
                        p50_ms=round(statistics.median(timings), 3),
                        p95_ms=_percentile(timings, 0.95),
                        p99_ms=_percentile(timings, 0.99),
                        requests_per_s=round(done / duration_s, 1),
                        cpu_ms_per_query=round(cpu_used * 1000 / max(done, 1), 3),
                        exact=exact,
                        freshness=freshness,
                    )
                )
        finally:
            await pool.close()
    return figures


def run_roster_bench(
    settings: Settings,
    node_counts: list[int],
    client_counts: list[int],
    requests: int = 500,
    workers: int = 8,
    duration_s: float = 10.0,
    profile_dir: Path | None = None,
    modes: list[str] | None = None,
    freshness_trials: int = 20,
) -> list[RosterFigures]:
    """Every mode × node count × client count; each mode and node count gets a fresh Redis, database and nodes."""
    results: list[RosterFigures] = []
    with bench_progress() as progress:
        modes = modes or [settings.roster_mode]
        for mode in modes:
            moded = settings.replace(roster_mode=mode)
            for nodes in node_counts:
                with shown_fleet(progress, nodes, moded, max(client_counts)) as running:
                    profiles = profile_dir if profile_dir is None or len(modes) == 1 else profile_dir / mode
                    measured = _measure(
                        running,
                        mode,
                        client_counts,
                        requests,
                        workers,
                        duration_s,
                        progress,
                        profiles,
                        freshness_trials,
                    )
                    results += asyncio.run(measured)
    return results
