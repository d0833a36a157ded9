"""Concurrent roster queries for one room on one node share bus requests, and every answer is still exact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest

from sioplay.client.sim import SimClient
from tests.helpers import NodeHandle, async_http_json, http_json, wait_until

QUERIES = 40


@pytest.fixture
def two_nodes(start_node: Callable[..., NodeHandle]) -> list[NodeHandle]:
    nodes = [start_node("node-a"), start_node("node-b")]
    for node in nodes:
        wait_until(lambda node=node: len(http_json(node.url + "/cluster")[1]["nodes"]) == 2, 5, "2 nodes")
    return nodes


async def roster_counters(node: NodeHandle) -> tuple[int, int]:
    _, body, _ = await async_http_json(node.url + "/healthz")
    metrics = body["metrics"]
    return metrics["roster_queries"], metrics["roster_bus_requests"]


async def socket_ids(session: aiohttp.ClientSession, node: NodeHandle, room: str) -> set[str]:
    async with session.get(f"{node.url}/{room}/users") as response:
        assert response.status == 200 and response.headers["X-Sioplay-Complete"] == "true"
        return {member["id_socket"] for member in json.loads(await response.read())}


async def test_concurrent_queries_share_bus_requests_and_see_a_join(two_nodes, clients) -> None:
    a, b = two_nodes
    batch = [SimClient(node.url, str(index), "Maths") for index, node in enumerate((a, b, a, b), start=1)]
    clients.extend(batch)
    await asyncio.gather(*(client.connect() for client in batch))
    expected = {client.sid for client in batch}
    queries_before, requests_before = await roster_counters(a)

    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(socket_ids(session, a, "Maths") for _ in range(QUERIES)))
        assert all(answer == expected for answer in answers)
        queries, requests = await roster_counters(a)
        assert queries - queries_before == QUERIES
        assert requests - requests_before < QUERIES, "concurrent queries for one room must share bus requests"

        # Queries keep a request in flight while a client joins on the other node: any asked after
        # the join returned must include it, although a request sent before it may still be out.
        stop = asyncio.Event()

        async def keep_asking() -> None:
            while not stop.is_set():
                await socket_ids(session, a, "Maths")

        background = [asyncio.create_task(keep_asking()) for _ in range(4)]
        try:
            joiner = SimClient(b.url, "9", "Maths")
            clients.append(joiner)
            await joiner.connect()
            after = await asyncio.gather(*(socket_ids(session, a, "Maths") for _ in range(QUERIES)))
        finally:
            stop.set()
            await asyncio.gather(*background)
        assert all(answer == expected | {joiner.sid} for answer in after)
