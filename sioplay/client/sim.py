"""A simulated client: one python-socketio AsyncClient that joins a room and records what it hears.

Given several URLs (one per host of the cluster), it connects through the first that takes it and,
with `reconnection`, moves on when its connection drops: the next URL first (the one that dropped it
is likely cut off), each URL in turn, a capped doubling back-off between rounds, a bounded number of
rounds. python-socketio's own reconnection is never used: it retries one URL only, and without a
deadline on the TCP connect, so an unreachable host would hold it for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import socketio

from sioplay.errors import ClientError

__all__ = ["RECONNECT_FAILED", "RETRY_INITIAL_S", "RETRY_MAX_S", "ROOM_EVENTS", "RoomEvent", "SimClient", "rotated"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ROOM_EVENTS = ("handshake", "socket-connected", "socket-disconnected", "identity-change", "token-expired")
# Not room events, but recorded with them so that a watcher sees the connection end, and a reconnecting
# client give up.
DISCONNECT = "disconnect"
RECONNECT_FAILED = "reconnect-failed"
# socket.io-client's own reconnection defaults: 1 s doubling up to 5 s; the first retry sooner, as a
# rolling restart's replacement (or another host) is usually up already.
RETRY_INITIAL_S = 0.25
RETRY_MAX_S = 5.0
RECONNECT_ROUNDS = 20
# A refusal that another node or host may not give: try the next URL rather than give up.
_PASSING_REFUSAL = "not ready"

# Called with a URL before connecting to it: the token to send there (None for none); ClientError skips the URL.
TokenSource = Callable[[str], Awaitable[str | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class RoomEvent:
    name: str
    data: Any
    at: float


def rotated(items: Sequence[T], first: int) -> list[T]:
    """`items` starting at index `first` (modulo their number), the ones before it last."""
    first %= len(items)
    return [*items[first:], *items[:first]]


class SimClient:
    """Connects as `id_user` to `room` through `url` (or the first of several that takes it).

    Every room event lands in `events` and goes to `on_event`. A refused connection raises ClientError
    with the server's own message. With `reconnection`, a dropped connection is made again, through
    the next URL first, and the server's new handshake is recorded like the first.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        id_user: str,
        room: str,
        *,
        http_session: aiohttp.ClientSession | None = None,
        on_event: Callable[[RoomEvent], None] | None = None,
        reconnection: bool = False,
        reconnect_rounds: int = RECONNECT_ROUNDS,
        token: str | TokenSource | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.urls = tuple(entry.rstrip("/") for entry in ([url] if isinstance(url, str) else url))
        if not self.urls:
            raise ValueError("SimClient needs at least one URL")
        self.id_user = id_user
        self.room = room
        self.on_event = on_event
        self.reconnection = reconnection
        self.reconnect_rounds = reconnect_rounds
        # Sent in the `auth` payload, never in the URL, which proxies log.
        self.token = token
        self.events: list[RoomEvent] = []
        self.handshake: dict[str, Any] | None = None
        self.refusal: str | None = None
        self._at = 0
        self._changed = asyncio.Event()
        self._http_session = http_session
        self._ssl_context = ssl_context
        self._closing = False
        self._timeout_s = 10.0
        self._failover: asyncio.Task[None] | None = None
        self.sio = self._new_sio()

    def _new_sio(self) -> socketio.AsyncClient:
        """A python-socketio client per connection attempt: one whose connect was cut short is never reused."""
        # python-socketio's own SIGINT handler disconnects every client and cancels every task;
        # the CLI leaves rooms itself, in its `finally` blocks.
        # `ssl_context` verifies a wss:// node without a session of the caller's (which carries its own).
        sio = socketio.AsyncClient(
            reconnection=False,
            http_session=self._http_session,
            handle_sigint=False,
            websocket_extra_options={"ssl": self._ssl_context} if self._ssl_context is not None else None,
        )
        for name in ROOM_EVENTS:
            sio.on(name, self._recorder(name))
        sio.on("connect_error", self._record_refusal)
        sio.on(DISCONNECT, self._dropped)
        return sio

    def _recorder(self, name: str) -> Callable[..., Any]:
        async def record(data: Any = None) -> None:
            self._record(name, data)

        return record

    def _record(self, name: str, data: Any) -> None:
        event = RoomEvent(name, data, time.time())
        if name == "handshake":
            self.handshake = data
        self.events.append(event)
        self._changed.set()
        if self.on_event is not None:
            self.on_event(event)

    async def _dropped(self, reason: Any = None) -> None:
        self._record(DISCONNECT, reason)
        if self.reconnection and not self._closing and (self._failover is None or self._failover.done()):
            self._failover = asyncio.create_task(self._reconnect(), name=f"reconnect {self.id_user} in {self.room}")
            self._failover.add_done_callback(self._failover_ended)

    def _failover_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        log.error("%s died: %r", task.get_name(), error, exc_info=error)
        self._record(RECONNECT_FAILED, {"error": f"{type(error).__name__}: {error}"})

    async def _record_refusal(self, data: Any = None) -> None:
        self.refusal = data.get("message") if isinstance(data, dict) else str(data)

    @property
    def final_refusal(self) -> str | None:
        """The server's "no" to the last attempt, unless it is one another node may not say (not ready)."""
        return self.refusal if self.refusal is not None and not self.refusal.startswith(_PASSING_REFUSAL) else None

    @property
    def url(self) -> str:
        """The URL of the current (or last) connection."""
        return self.urls[self._at]

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid("/")

    @property
    def connected(self) -> bool:
        return self.sio.connected

    async def connect(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Connect through the current URL, else each next one in turn; waits for the handshake and returns it."""
        self._closing, self._timeout_s = False, timeout_s
        return await self._connect_round(self._at, timeout_s)

    async def _connect_round(self, first: int, timeout_s: float) -> dict[str, Any]:
        failures: list[str] = []
        for index in rotated(range(len(self.urls)), first):
            try:
                handshake = await self._connect_once(self.urls[index], timeout_s)
            except ClientError as exc:
                if self.final_refusal is not None or len(self.urls) == 1:
                    raise
                failures.append(f"{self.urls[index]}: {exc}")
                continue
            self._at = index
            return handshake
        raise ClientError(f"cannot connect through any of {len(self.urls)} URLs ({'; '.join(failures)})")

    async def _connect_once(self, url: str, timeout_s: float) -> dict[str, Any]:
        self.refusal = None
        self.handshake = None
        token = await self.token(url) if callable(self.token) else self.token
        self.sio = sio = self._new_sio()
        query = urlencode({"id_user": self.id_user, "room": self.room})
        try:
            # The TCP connect has no deadline of its own: a host that drops packets would hold it for minutes.
            async with asyncio.timeout(timeout_s):
                await sio.connect(
                    f"{url}?{query}",
                    transports=["websocket"],
                    wait_timeout=timeout_s,
                    retry=False,
                    auth={"token": token} if token else None,
                )
        except socketio.exceptions.ConnectionError as exc:
            raise ClientError(self.refusal or f"cannot connect to {url}: {exc}") from None
        except TimeoutError:
            await sio.disconnect()
            raise ClientError(f"cannot connect to {url}: no answer within {timeout_s:g} s") from None
        await self.wait_for(lambda: self.handshake is not None, timeout_s, "the handshake")
        assert self.handshake is not None
        return self.handshake

    async def _reconnect(self) -> None:
        """Rounds over the URLs, the next one first, with back-off between rounds; gives up after the last."""
        delay, error = RETRY_INITIAL_S, "no attempt"
        for _ in range(self.reconnect_rounds):
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                handshake = await self._connect_round(self._at + 1, self._timeout_s)
            except ClientError as exc:
                if self.final_refusal is not None:
                    self._record(RECONNECT_FAILED, {"error": str(exc)})
                    return
                error, delay = str(exc), min(delay * 2, RETRY_MAX_S)
                continue
            log.info("%s in %s: reconnected through %s to %s", self.id_user, self.room, self.url, handshake.get("node"))
            return
        self._record(RECONNECT_FAILED, {"error": f"{error}; gave up after {self.reconnect_rounds} rounds"})

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
        """Leave: no reconnection after this."""
        self._closing = True
        if self._failover is not None and self._failover is not asyncio.current_task():
            self._failover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._failover
        await self.sio.disconnect()
