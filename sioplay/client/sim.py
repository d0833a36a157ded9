"""A simulated client: one python-socketio AsyncClient that joins a room and records what it hears."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import socketio

from sioplay.errors import ClientError

__all__ = ["ROOM_EVENTS", "RoomEvent", "SimClient"]

ROOM_EVENTS = ("handshake", "socket-connected", "socket-disconnected", "identity-change", "token-expired")
# Not a room event, but recorded with them so that a watcher sees the connection end.
DISCONNECT = "disconnect"


@dataclasses.dataclass(frozen=True, slots=True)
class RoomEvent:
    name: str
    data: Any
    at: float


class SimClient:
    """Connects as `id_user` to `room`; every room event lands in `events` and goes to `on_event`.

    A refused connection raises ClientError with the server's own message.
    """

    def __init__(
        self,
        url: str,
        id_user: str,
        room: str,
        *,
        http_session: aiohttp.ClientSession | None = None,
        on_event: Callable[[RoomEvent], None] | None = None,
        reconnection: bool = False,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.id_user = id_user
        self.room = room
        self.on_event = on_event
        # Sent in the `auth` payload, never in the URL, which proxies log.
        self.token = token
        self.events: list[RoomEvent] = []
        self.handshake: dict[str, Any] | None = None
        self.refusal: str | None = None
        self._changed = asyncio.Event()
        # python-socketio's own SIGINT handler disconnects every client and cancels every task;
        # the CLI leaves rooms itself, in its `finally` blocks.
        # `ssl_context` verifies a wss:// node without a session of the caller's (which carries its own).
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            http_session=http_session,
            handle_sigint=False,
            websocket_extra_options={"ssl": ssl_context} if ssl_context is not None else None,
        )
        for name in ROOM_EVENTS:
            self.sio.on(name, self._recorder(name))
        self.sio.on("connect_error", self._record_refusal)
        self.sio.on(DISCONNECT, self._recorder(DISCONNECT))

    def _recorder(self, name: str) -> Callable[[Any], Any]:
        async def record(data: Any = None) -> None:
            event = RoomEvent(name, data, time.time())
            if name == "handshake":
                self.handshake = data
            self.events.append(event)
            self._changed.set()
            if self.on_event is not None:
                self.on_event(event)

        return record

    async def _record_refusal(self, data: Any = None) -> None:
        self.refusal = data.get("message") if isinstance(data, dict) else str(data)

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid("/")

    @property
    def connected(self) -> bool:
        return self.sio.connected

    async def connect(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Connect and wait for the handshake; returns it."""
        query = urlencode({"id_user": self.id_user, "room": self.room})
        try:
            await self.sio.connect(
                f"{self.url}?{query}",
                transports=["websocket"],
                wait_timeout=timeout_s,
                retry=False,
                auth={"token": self.token} if self.token else None,
            )
        except socketio.exceptions.ConnectionError as exc:
            raise ClientError(self.refusal or f"cannot connect to {self.url}: {exc}") from None
        await self.wait_for(lambda: self.handshake is not None, timeout_s, "the handshake")
        assert self.handshake is not None
        return self.handshake

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Wait until `predicate()` holds, re-checking after every event."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise ClientError(f"no {what} within {timeout_s:g} s") from None

    async def wait_event(self, name: str, timeout_s: float = 5.0, **match: Any) -> RoomEvent:
        """The first recorded event `name` whose data has every key/value in `match`."""

        def found() -> RoomEvent | None:
            for event in self.events:
                if event.name == name and isinstance(event.data, dict):
                    if all(event.data.get(key) == value for key, value in match.items()):
                        return event
            return None

        await self.wait_for(lambda: found() is not None, timeout_s, f"{name} event {match}")
        event = found()
        assert event is not None
        return event

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    async def call(self, event: str, data: Any = None, timeout_s: float = 10.0) -> Any:
        """Emit and wait for the server's acknowledgement, i.e. until its handler has run."""
        try:
            return await self.sio.call(event, data, timeout=timeout_s)
        except socketio.exceptions.TimeoutError:
            raise ClientError(f"no acknowledgement of {event} within {timeout_s:g} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise ClientError(f"cannot send {event}: not connected") from None

    async def disconnect(self) -> None:
        await self.sio.disconnect()
