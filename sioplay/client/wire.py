"""A lean Socket.IO v5 client over one raw websocket, for swarms and benchmarks.

Every swarm member hears every other member's join: N clients in one room are
O(N^2) frames for one process. python-socketio's AsyncClient starts a task for
each message, and its writer gives up on a connection that had nothing to send
for 30 s (normally the pongs); under a join storm it fell behind, answered the
server's pings too late, dropped, and the swarm collapsed into reconnect loops.
A client on aiohttp's websocket still cost one awaited message, and its
wake-ups, per frame: in a 2000-client join storm the load generator, not the
server, set the pace. This client is an asyncio protocol: frames are parsed
where the bytes arrive, room events are counted without being decoded, and
pings are answered from there.

Engine.IO v4 over websocket: one packet per frame, `0{open}`, `2` ping / `3`
pong, `1` close, `4` message. Socket.IO v5 inside it: `40` connect, `41`
disconnect, `42[event, data]`, `44{message}` connect error.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from sioplay.errors import ClientError

__all__ = ["WireClient"]

_CLOSE, _PING, _PONG = b"1", b"2", b"3"
_CONNECT, _DISCONNECT, _EVENT, _CONNECT_ERROR = b"40", b"41", b"42", b"44"
_HANDSHAKE = b'42["handshake"'
# Before the server has told us its ping interval: its default 25 s + 20 s.
_DEFAULT_SILENCE_S = 45.0
_MAX_HEADER_BYTES = 16 * 1024
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455 5.2: clients must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    masked = bytes(byte ^ mask[index & 3] for index, byte in enumerate(payload))
    return header + mask + masked


class _WireProtocol(asyncio.Protocol):
    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.client.upgrade_request())

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.end(f"connection lost: {exc}" if exc else "the server closed the connection")

    def data_received(self, data: bytes) -> None:
        self.client.last_heard = time.monotonic()
        self.buffer += data
        if not self.upgraded and not self._read_upgrade():
            return
        self._read_frames()

    def _read_upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                self.client.end("the server's upgrade response is too long")
            return False
        status_line = bytes(self.buffer[: self.buffer.find(b"\r\n")]).decode("latin-1")
        del self.buffer[: end + 4]
        if status_line.split(" ", 2)[1:2] != ["101"]:
            self.client.end(f"websocket upgrade refused: {status_line}")
            return False
        self.upgraded = True
        return True

    def _read_frames(self) -> None:
        buffer, offset, size = self.buffer, 0, len(self.buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                if size - offset < 4:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), 10
            if second & 0x80 or not first & 0x80:
                self.client.end("the server sent a masked or fragmented frame")
                return
            if size - offset < header + length:
                break
            payload = bytes(buffer[offset + header : offset + header + length])
            offset += header + length
            self.client.on_frame(first & 0x0F, payload)
            if self.client.ended.done():
                return
        del buffer[:offset]


class WireClient:
    """Connects as `id_user` to `room`; `heard()` is called for each room event after the handshake.

    Refusals and lost connections are ClientErrors whose message says why.
    """

    def __init__(
        self,
        url: str,
        id_user: str,
        room: str,
        heard: Callable[[], None],
        ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        parts = urlsplit(url.rstrip("/"))
        self.tls = parts.scheme == "https"
        self.ssl_context = ssl_context
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        query = urlencode({"EIO": "4", "transport": "websocket", "id_user": id_user, "room": room})
        self.target = f"{parts.path}/socket.io/?{query}"
        self.heard = heard
        # In the CONNECT packet's auth payload, never in the request line.
        self._connect = _CONNECT + orjson.dumps({"token": token}) if token else _CONNECT
        self.handshake: dict[str, Any] | None = None
        self.last_heard = time.monotonic()
        self._silence_s = _DEFAULT_SILENCE_S
        self._protocol: _WireProtocol | None = None
        self._handshaken: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # Resolved with why the connection ended.
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def upgrade_request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def connect(self) -> dict[str, Any]:
        """Open, join the default namespace and wait for the handshake; ClientError with the server's refusal."""
        loop = asyncio.get_running_loop()
        try:
            context = (self.ssl_context or ssl.create_default_context()) if self.tls else None
            _, self._protocol = await loop.create_connection(
                lambda: _WireProtocol(self), self.host, self.port, ssl=context
            )
            done, _ = await asyncio.wait({self._handshaken, self.ended}, return_when=asyncio.FIRST_COMPLETED)
        except OSError as exc:
            self.end(str(exc))
            raise ClientError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        except BaseException:
            await self.close()
            raise
        if self._handshaken not in done:
            await self.close()
            raise ClientError(self.ended.result())
        return self._handshaken.result()

    async def run(self) -> str:
        """Answer pings and count events until the connection ends; why it ended."""
        try:
            while not self.ended.done():
                quiet_for = time.monotonic() - self.last_heard
                if quiet_for > self._silence_s:
                    self.end(f"nothing from the server in {self._silence_s:g} s")
                    break
                await asyncio.wait({self.ended}, timeout=self._silence_s - quiet_for + 0.1)
            return self.ended.result()
        finally:
            await self.close()

    async def close(self) -> None:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None and not protocol.transport.is_closing():
            if protocol.upgraded and not self.ended.done():
                self._send(_DISCONNECT)
                protocol.transport.write(_frame(_OP_CLOSE, (1000).to_bytes(2, "big")))
            protocol.transport.close()
        self.end("closed by the client", abort=False)

    def end(self, reason: str, abort: bool = True) -> None:
        """Record why the connection ended; unless the client is leaving politely, drop it at once."""
        if not self.ended.done():
            self.ended.set_result(reason)
        protocol = self._protocol
        if abort and protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    def _send(self, packet: bytes) -> None:
        assert self._protocol is not None and self._protocol.transport is not None
        self._protocol.transport.write(_frame(_OP_TEXT, packet))

    def on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_TEXT:
            try:
                self._on_packet(payload)
            except orjson.JSONDecodeError:
                self.end(f"malformed packet from the server: {payload[:40]!r}")
        elif opcode == _OP_PING:
            assert self._protocol is not None and self._protocol.transport is not None
            self._protocol.transport.write(_frame(_OP_PONG, payload))
        elif opcode == _OP_CLOSE:
            self.end("the server closed the connection")
        elif opcode != _OP_PONG:
            self.end(f"unexpected websocket frame (opcode {opcode})")

    def _on_packet(self, packet: bytes) -> None:
        if packet.startswith(_EVENT):
            if self.handshake is None and packet.startswith(_HANDSHAKE):
                event = orjson.loads(packet[2:])
                self.handshake = event[1] if len(event) > 1 and isinstance(event[1], dict) else {}
                self._handshaken.set_result(self.handshake)
            else:
                self.heard()
        elif packet == _PING:
            self._send(_PONG)
        elif packet.startswith(b"0"):
            settings = orjson.loads(packet[1:])
            self._silence_s = (settings.get("pingInterval", 25000) + settings.get("pingTimeout", 20000)) / 1000
            self._send(self._connect)
        elif packet.startswith(_CONNECT_ERROR):
            data = orjson.loads(packet[2:]) if len(packet) > 2 else {}
            self.end(data.get("message", "connection refused") if isinstance(data, dict) else str(data))
        elif packet.startswith(_DISCONNECT) or packet == _CLOSE:
            self.end("the server disconnected the client")
