"""The room broadcast fast path keeps each socket's frame order and bounds a socket that stops reading.

Both over plain websockets and over TLS (`--tls dev`), where the frames go through asyncio's TLS transport:
the corked writes and the back-pressure of a socket that stops reading must hold there too.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from sioplay.client.sim import SimClient
from sioplay.cluster.dev_ca import ensure_dev_certificate
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_wait_until, http_json


@pytest.fixture(params=["ws", "wss"])
def wire_settings(request: pytest.FixtureRequest, seeded_settings: Settings) -> Settings:
    if request.param == "ws":
        return seeded_settings
    ensure_dev_certificate(seeded_settings.home)
    return dataclasses.replace(seeded_settings, tls="dev")


def unlimited_identity_changes(settings: Settings) -> Settings:
    """These tests flood with identity-change to load the broadcast path; the rate limit is tested elsewhere."""
    return dataclasses.replace(settings, identity_change_rate_per_s=1e9, identity_change_burst=10**9)


async def test_handshake_first_and_joins_in_order_during_a_flood(
    start_node: Callable[..., NodeHandle], wire_settings: Settings
) -> None:
    flooding_settings = unlimited_identity_changes(wire_settings)
    a, b = start_node("node-a", flooding_settings), start_node("node-b", flooding_settings)
    observer = SimClient(a.url, "1", "Burst", ssl_context=a.ssl_context)
    flooder = SimClient(b.url, "2", "Burst", ssl_context=b.ssl_context)
    joiners = [SimClient(b.url, str(index % 10 + 1), "Burst", ssl_context=b.ssl_context) for index in range(20)]
    await observer.connect()
    await flooder.connect()

    async def flood() -> None:
        while True:
            await flooder.emit("identity-change", {})
            # Not a wait for anything: emit may not yield, and the flood must not starve the joins it races.
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    try:
        for joiner in joiners:
            await joiner.connect()
        joined = [joiner.sid for joiner in joiners]
        await observer.wait_for(
            lambda: [e.data["id_socket"] for e in observer.events if e.name == "socket-connected"][-1:] == joined[-1:],
            10,
            "every join to reach the observer",
        )
    finally:
        flooding.cancel()
        await asyncio.gather(flooding, return_exceptions=True)
    try:
        seen = [e.data["id_socket"] for e in observer.events if e.name == "socket-connected"]
        assert seen == [flooder.sid, *joined], "joins arrive in the order they happened"
        for joiner in joiners:
            assert joiner.events[0].name == "handshake", "nothing overtakes the handshake"
        assert sum(e.name == "identity-change" for e in observer.events) > 0, "the flood was delivered too"
    finally:
        await asyncio.gather(*(c.disconnect() for c in [observer, flooder, *joiners]), return_exceptions=True)


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def _connect_and_stop_reading(port: int, id_user: str, room: str, tls: ssl.SSLContext | None) -> Any:
    """A websocket client with a tiny receive buffer that joins `room`, then never reads again; close() ends it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if tls is not None:
        return await _stop_reading_over_tls(sock, tls, id_user, room, port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /socket.io/?EIO=4&transport=websocket&id_user={id_user}&room={room} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await loop.sock_recv(sock, 1024)
    assert response.startswith(b"HTTP/1.1 101"), response
    await loop.sock_sendall(sock, _masked_text_frame("40"))
    return sock


async def _stop_reading_over_tls(sock: socket.socket, tls: ssl.SSLContext, id_user: str, room: str, port: int) -> Any:
    # A small reader limit: past it, asyncio stops reading the TLS stream, and so the socket.
    reader, writer = await asyncio.open_connection(sock=sock, ssl=tls, server_hostname="127.0.0.1", limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /socket.io/?EIO=4&transport=websocket&id_user={id_user}&room={room} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    writer.write(_masked_text_frame("40"))
    await writer.drain()
    return writer


async def test_a_client_that_stops_reading_is_disconnected(
    start_node: Callable[..., NodeHandle], wire_settings: Settings
) -> None:
    bounded = dataclasses.replace(
        unlimited_identity_changes(wire_settings), max_socket_backlog=50, ws_send_buffer_bytes=8192
    )
    node = start_node("node-a", bounded)
    observer = SimClient(node.url, "1", "Flood", ssl_context=node.ssl_context)
    flooder = SimClient(node.url, "2", "Flood", ssl_context=node.ssl_context)
    await observer.connect()
    await flooder.connect()
    stalled = await _connect_and_stop_reading(node.port, "3", "Flood", node.ssl_context)
    try:
        joined = await observer.wait_event("socket-connected", id_user="3")
        stalled_sid = joined.data["id_socket"]

        async def flood_until_dropped() -> bool:
            for _ in range(200):
                await flooder.emit("identity-change", {})
            return any(e.name == "socket-disconnected" and e.data["id_socket"] == stalled_sid for e in observer.events)

        await async_wait_until(flood_until_dropped, 30, "the stalled socket to be disconnected")
        assert "it stopped reading" in node.log_text()
        assert "corked-writes is off" not in node.log_text(), "the frame writer is corked on a TLS transport too"
        before = sum(e.name == "identity-change" for e in observer.events)
        await flooder.emit("identity-change", {})
        await observer.wait_for(
            lambda: sum(e.name == "identity-change" for e in observer.events) > before, 5, "the room to keep working"
        )
        status, body, _ = http_json(node.url + "/rooms/Flood", context=node.ssl_context)
        assert status == 200 and sorted(m["id_user"] for m in body["users"]) == ["1", "2"]
    finally:
        stalled.close()
        await asyncio.gather(observer.disconnect(), flooder.disconnect(), return_exceptions=True)


async def test_room_frames_are_written_at_once_to_idle_sockets(
    start_node: Callable[..., NodeHandle], wire_settings: Settings
) -> None:
    node = start_node("node-a", wire_settings)
    clients = [SimClient(node.url, user, "Direct", ssl_context=node.ssl_context) for user in ("1", "2", "3")]
    try:
        for client in clients:
            await client.connect()
        await clients[0].wait_event("socket-connected", id_socket=clients[2].sid)
        status, health, _ = http_json(node.url + "/healthz", context=node.ssl_context)
        assert status == 200
        # Three handshakes, each behind Socket.IO's CONNECT answer in its socket's queue, so queued to keep the
        # order; then 0 + 1 + 2 joins told to those already there, whose writers wait with nothing queued.
        assert health["metrics"]["room_deliveries"] == {"direct": 3, "queued": 3}
        assert [event.name for event in clients[0].events] == ["handshake", "socket-connected", "socket-connected"]
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)
