"""One client cannot take a node down: binary floods, malformed packets, silent sessions, slow headers, too many
connections and identity-change floods each end with that client refused, counted, and logged once."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import psutil
import pytest

from sioplay.client.sim import SimClient
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_wait_until

FRAME_TIMEOUT_S = 5.0


def ws_url(node: NodeHandle, id_user: str = "1", room: str = "Maths") -> str:
    return f"ws://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=websocket&id_user={id_user}&room={room}"


async def node_metrics(session: aiohttp.ClientSession, node: NodeHandle) -> dict[str, int]:
    async with session.get(node.url + "/healthz") as response:
        refused: dict[str, int] = (await response.json())["metrics"]["client_refused_by_reason"]
        return refused


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def connected_ws(
    session: aiohttp.ClientSession, node: NodeHandle, id_user: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(ws_url(node, id_user))
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40{")
    return ws


async def closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True once the server closed `ws` (whatever it sent before)."""
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return True


async def test_a_binary_attachment_flood_ends_with_the_sender_disconnected(
    start_node: Callable[..., NodeHandle], session: aiohttp.ClientSession, clients: list[SimClient]
) -> None:
    node = start_node("node-a")
    observer = SimClient(node.url, "2", "Maths")
    clients.append(observer)
    await observer.connect()
    rss_before = psutil.Process(node.pid).memory_info().rss
    ws = await connected_ws(session, node, "1")
    sid = (await observer.wait_event("socket-connected", id_user="1")).data["id_socket"]
    await ws.send_str('451000000-["identity-change",{"_placeholder":true,"num":0}]')
    sent = 0
    chunk = b"\x00" * 64 * 1024
    while not ws.closed and sent < 60 * 1024 * 1024:
        try:
            await ws.send_bytes(chunk)
        except (ConnectionError, RuntimeError):
            break
        sent += len(chunk)
        await asyncio.sleep(0)
    assert await closed(ws)
    await observer.wait_event("socket-disconnected", id_socket=sid)
    growth = psutil.Process(node.pid).memory_info().rss - rss_before
    assert growth < 8 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB for {sent / 2**20:.1f} MiB sent"
    assert (await node_metrics(session, node)).get("binary packet") == 1
    assert not [event for event in observer.events if event.name == "identity-change"], "nothing was relayed"

    binary = await connected_ws(session, node, "3")
    await binary.send_bytes(b"\x04binary")
    assert await closed(binary)
    assert (await node_metrics(session, node)).get("binary frame") == 1


async def test_malformed_frames_leave_one_log_line_and_a_closed_connection(
    start_node: Callable[..., NodeHandle], session: aiohttp.ClientSession
) -> None:
    node = start_node("node-a")
    ws = await session.ws_connect(ws_url(node))
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        assert (await ws.receive_str()).startswith("0{")
    for _ in range(20_000):
        if ws.closed:
            break
        try:
            await ws.send_str("42[")
        except (ConnectionError, RuntimeError):
            break
    assert await closed(ws)
    assert await node_metrics(session, node) == {"malformed packet": 1}
    for other in ("9 is no engine.io packet", '4{"no socket.io packet'):
        bad = await session.ws_connect(ws_url(node))
        await bad.send_str(other)
        assert await closed(bad)
    assert await node_metrics(session, node) == {"malformed packet": 3}
    lines = [line for line in node.log_text().splitlines() if "closed the connection" in line]
    assert len(lines) == 1, lines  # one within the log interval, however many were refused
    assert "Traceback" not in node.log_text()


async def test_sessions_that_never_connect_are_closed(
    start_node: Callable[..., NodeHandle],
    seeded_settings: Settings,
    session: aiohttp.ClientSession,
    clients: list[SimClient],
) -> None:
    node = start_node("node-a", dataclasses.replace(seeded_settings, connect_timeout_s=0.5))
    kept = SimClient(node.url, "1", "Maths")
    clients.append(kept)
    await kept.connect()
    # Opened after the connected one: once they are closed, its own deadline has passed too.
    silent = [await session.ws_connect(ws_url(node)) for _ in range(20)]
    for ws in silent:
        assert await closed(ws)
    assert (await node_metrics(session, node)) == {"no Socket.IO CONNECT within 0.5 s": 20}
    async with session.get(node.url + "/rooms/Maths") as response:
        assert [member["id_socket"] for member in (await response.json())["users"]] == [kept.sid]
    assert kept.connected, "a connected socket is not timed out"


async def test_trickled_headers_are_cut_off(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, session: aiohttp.ClientSession
) -> None:
    node = start_node("node-a", dataclasses.replace(seeded_settings, header_timeout_s=0.5))
    loop = asyncio.get_running_loop()
    trickler = socket.create_connection(("127.0.0.1", node.port))
    trickler.setblocking(False)
    idle = socket.create_connection(("127.0.0.1", node.port))
    idle.setblocking(False)
    try:
        await loop.sock_sendall(trickler, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def cut_off() -> bool:
            try:
                await loop.sock_sendall(trickler, b"X-Slow: 1\r\n")
                return await asyncio.wait_for(loop.sock_recv(trickler, 1024), 0.2) == b""
            except TimeoutError:
                return False
            except ConnectionError:
                return True

        await async_wait_until(cut_off, 5.0, "the trickling connection to be closed", interval=0.1)
        assert await asyncio.wait_for(loop.sock_recv(idle, 1024), 5.0) == b"", "an idle connection is closed too"
    finally:
        trickler.close()
        idle.close()
    refused = await node_metrics(session, node)
    assert refused == {"request headers not complete within 0.5 s": 2}
    async with session.get(node.url + "/healthz") as response:
        assert response.status == 200, "prompt requests are served"


async def test_one_address_cannot_take_every_connection(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, session: aiohttp.ClientSession
) -> None:
    node = start_node("node-a", dataclasses.replace(seeded_settings, max_connections_per_address=5))
    loop = asyncio.get_running_loop()
    held = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(5)]
    try:
        extra = socket.create_connection(("127.0.0.1", node.port))
        extra.setblocking(False)
        assert await asyncio.wait_for(loop.sock_recv(extra, 1024), 5.0) == b"", "the sixth is closed at once"
        extra.close()
        for sock in held:
            sock.close()
        async with session.get(node.url + "/healthz") as response:
            health = await response.json()
        assert health["metrics"]["client_refused_by_reason"] == {"too many connections from one address": 1}
    finally:
        for sock in held:
            sock.close()


async def test_an_identity_change_flood_is_rate_limited(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, session: aiohttp.ClientSession
) -> None:
    node = start_node("node-a", dataclasses.replace(seeded_settings, identity_change_burst=5))
    observer = SimClient(node.url, "2", "Maths")
    await observer.connect()
    try:
        ws = await connected_ws(session, node, "9")
        for _ in range(500):
            await ws.send_str('42["identity-change",{}]')

        async def every_one_relayed_or_refused() -> int | None:
            refused = (await node_metrics(session, node)).get("identity-change over the rate limit", 0)
            relayed = sum(event.name == "identity-change" for event in observer.events)
            return relayed if refused + relayed == 500 else None

        relayed = await async_wait_until(every_one_relayed_or_refused, FRAME_TIMEOUT_S, "every event to be counted")
        assert 5 <= relayed <= 10, f"{relayed} relayed: the burst, plus what the rate refilled meanwhile"
        assert not ws.closed, "a fast client is slowed, not dropped"
        await ws.close()
    finally:
        await observer.disconnect()
