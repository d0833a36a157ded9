"""What a connected socket keeps (patches `send-queue`, `lean-socket` and the driver's environ), and that refusing,
aborting and pinging it still work with that little."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sioplay.client.sim import SimClient
from sioplay.common.ports import free_port
from sioplay.node import patches
from sioplay.node.app import Node
from sioplay.node.send_queue import SendQueue
from sioplay.settings import Settings
from tests.helpers import async_http_json, async_wait_until

FRAME_TIMEOUT_S = 5.0


@pytest.fixture
async def in_process_node(seeded_settings: Settings) -> AsyncIterator[Node]:
    """A node in the test's own process, so that its engine.io tables can be read."""
    node = Node(seeded_settings, "node-m", free_port())
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def ws_url(node: Node, id_user: str = "1", room: str = "Maths") -> str:
    return f"ws://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=websocket&id_user={id_user}&room={room}"


async def refused_by_reason(node: Node) -> dict[str, int]:
    refused: dict[str, int] = (await async_http_json(f"http://127.0.0.1:{node.port}/healthz"))[1]["metrics"][
        "client_refused_by_reason"
    ]
    return refused


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = FRAME_TIMEOUT_S) -> bool:
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return True


async def test_a_connected_socket_keeps_a_small_record_and_can_still_be_refused_and_aborted(
    in_process_node: Node, clients: list[SimClient]
) -> None:
    node = in_process_node
    url = f"http://127.0.0.1:{node.port}"
    kept, observer = SimClient(url, "1", "Maths"), SimClient(url, "2", "Maths")
    clients.extend([kept, observer])
    await observer.connect()
    await kept.connect()
    assert len(node.sio.environ) == 2
    for environ in node.sio.environ.values():
        assert set(environ) == {"QUERY_STRING", "sioplay.connection"}, "no headers, no aiohttp request"
        assert not any(isinstance(value, web.BaseRequest) for value in environ.values())
        connection = patches.connection_of(environ)
        assert connection is not None and connection.remote == "127.0.0.1" and not connection.refused
        assert connection.transport is not None and not connection.transport.is_closing()
    eio_socket = next(iter(node.sio.eio.sockets.values()))
    assert isinstance(eio_socket.queue, SendQueue) and isinstance(eio_socket, patches.LeanSocket)

    # The room broadcaster and the node's stop abort through the record.
    sid = kept.sid
    eio_sid = node.sio.manager.eio_sid_from_sid(sid, "/")
    assert patches.abort_connection(node.sio, eio_sid)
    await kept.wait_for(lambda: not kept.connected, FRAME_TIMEOUT_S, "the aborted client to notice")
    await observer.wait_event("socket-disconnected", id_socket=sid)
    await async_wait_until(lambda: eio_sid not in node.sio.environ, FRAME_TIMEOUT_S, "its environ to go")

    # The client guard refuses through it, once, however many bad packets were already on their way.
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(node, "3")) as ws:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("40")
            assert (await ws.receive_str()).startswith("40{")
        for _ in range(3):
            await ws.send_str('451-["identity-change",{"_placeholder":true,"num":0}]')
        assert await closed(ws)
    assert await refused_by_reason(node) == {"binary packet": 1}
    assert observer.connected, "the others stay"


async def test_pings_go_on_while_answered_and_a_silent_client_is_closed(in_process_node: Node) -> None:
    node = in_process_node
    node.sio.eio.ping_interval, node.sio.eio.ping_timeout = 0.2, 0.5
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(node)) as ws:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("40")
            pings = 0
            while pings < 3:
                if await ws.receive_str() == "2":
                    pings += 1
                    await ws.send_str("3")
        # Unanswered from here: the node closes it past the ping interval and timeout.
        assert await closed(ws)
    await async_wait_until(lambda: not node.sio.environ, FRAME_TIMEOUT_S, "the silent client's session to end")
    assert len(node.sockets) == 0
