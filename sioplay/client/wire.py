"""A lean Socket.IO v5 client over one raw websocket, for swarms.

Every swarm member hears every other member's join: N clients in one room are
O(N^2) frames for one process. python-socketio's AsyncClient starts a task for
each message, and its writer gives up on a connection that had nothing to send
for 30 s (normally the pongs); under a join storm it fell behind, answered the
server's pings too late, dropped, and the swarm collapsed into reconnect loops
(2000 clients never all connected). This client answers pings, reads the
handshake, and only counts the room events, which it does not need to decode.

Engine.IO v4 over websocket: one packet per frame, `0{open}`, `2` ping / `3`
pong, `1` close, `4` message. Socket.IO v5 inside it: `40` connect, `41`
disconnect, `42[event, data]`, `44{message}` connect error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from sioplay.errors import ClientError

__all__ = ["WireClient"]

_CLOSE, _PING, _PONG = "1", "2", "3"
_CONNECT, _DISCONNECT, _EVENT, _CONNECT_ERROR = "40", "41", "42", "44"
# Before the server has told us its ping interval: its default 25 s + 20 s.
_DEFAULT_SILENCE_S = 45.0


class WireClient:
    """Connects as `id_user` to `room` over `session`; `heard()` is called for each room event after the handshake.

    Refusals and lost connections are ClientErrors whose message says why.
    """

    def __init__(
        self, session: aiohttp.ClientSession, url: str, id_user: str, room: str, heard: Callable[[], None]
    ) -> None:
        query = urlencode({"EIO": "4", "transport": "websocket", "id_user": id_user, "room": room})
        # http:// -> ws://, https:// -> wss://
        self.url = f"ws{url.rstrip('/')[len('http'):]}/socket.io/?{query}"
        self.session = session
        self.heard = heard
        self.handshake: dict[str, Any] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._silence_s = _DEFAULT_SILENCE_S

    async def connect(self) -> dict[str, Any]:
        """Open, join the default namespace and wait for the handshake; ClientError with the server's refusal."""
        try:
            # compress=0: per-message deflate costs more than it saves on small room events.
            self._ws = await self.session.ws_connect(self.url, compress=0)
            opened = await self._next()
            if not opened.startswith("0"):
                raise ClientError(f"expected an Engine.IO open packet, got {opened[:40]!r}")
            settings = orjson.loads(opened[1:])
            self._silence_s = (settings.get("pingInterval", 25000) + settings.get("pingTimeout", 20000)) / 1000
            await self._ws.send_str(_CONNECT)
            while self.handshake is None:
                await self._handle(await self._next())
        except (aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
            await self.close()
            raise ClientError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        except BaseException:
            await self.close()
            raise
        return self.handshake

    async def run(self) -> str:
        """Answer pings and count events until the connection ends; why it ended."""
        try:
            while True:
                await self._handle(await self._next())
        except ClientError as ended:
            return str(ended)
        finally:
            await self.close()

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(_DISCONNECT)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                pass
            await ws.close()

    async def _next(self) -> str:
        assert self._ws is not None
        try:
            message = await self._ws.receive(timeout=self._silence_s)
        except TimeoutError:
            raise ClientError(f"nothing from the server in {self._silence_s:g} s") from None
        if message.type == aiohttp.WSMsgType.TEXT:
            return str(message.data)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise ClientError("the server closed the connection")
        if message.type == aiohttp.WSMsgType.ERROR:
            raise ClientError(f"transport error: {message.data}")
        raise ClientError(f"unexpected {message.type.name} frame")

    async def _handle(self, packet: str) -> None:
        if packet.startswith(_EVENT):
            if self.handshake is None and packet.startswith('42["handshake"'):
                event = orjson.loads(packet[2:])
                self.handshake = event[1] if len(event) > 1 and isinstance(event[1], dict) else {}
            else:
                self.heard()
        elif packet == _PING:
            assert self._ws is not None
            await self._ws.send_str(_PONG)
        elif packet.startswith(_CONNECT_ERROR):
            data = orjson.loads(packet[2:]) if len(packet) > 2 else {}
            raise ClientError(data.get("message", "connection refused") if isinstance(data, dict) else str(data))
        elif packet.startswith(_DISCONNECT) or packet == _CLOSE:
            raise ClientError("the server disconnected the client")
