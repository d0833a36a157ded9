"""Every TCP connection a node accepts, before aiohttp sees it: a cap per address and a deadline for request headers.

aiohttp has neither: a client that trickles header lines (slowloris) keeps its
connection for the keep-alive timeout, about an hour, and one address may hold
as many connections as the node has file descriptors. Here each connection is
counted against its address and refused past `max_per_address`, and closed
if the headers of a request are not complete within `header_timeout_s` of
its opening or of the previous response (so an idle keep-alive connection is
closed after that time as well). A websocket is past its headers once
upgraded; the Socket.IO side bounds it from then on (`patches.ClientGuard`).

Only asyncio's and aiohttp's public interfaces are used: each connection's
protocol is wrapped, and a middleware says when a request's headers are in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sioplay.log import Throttle

__all__ = ["ConnectionGuard", "GuardedRunner"]

log = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionGuard:
    def __init__(self, max_per_address: int, header_timeout_s: float, on_refused: Callable[[str], None]) -> None:
        self.max_per_address = max_per_address
        self.header_timeout_s = header_timeout_s
        self.on_refused = on_refused
        self.open_by_address: Counter[str] = Counter()
        self._deadlines: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}
        self._throttle = Throttle(_LOG_EVERY_S)

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedConnection(self, make_handler())

    def admit(self, address: str) -> bool:
        if self.open_by_address[address] >= self.max_per_address:
            self._refuse(address, "too many connections from one address")
            return False
        self.open_by_address[address] += 1
        return True

    def release(self, address: str, transport: asyncio.BaseTransport) -> None:
        self.disarm(transport)
        self.open_by_address[address] -= 1
        if self.open_by_address[address] <= 0:
            del self.open_by_address[address]

    def arm(self, transport: asyncio.BaseTransport, address: str) -> None:
        """The headers of the next request must be complete within the header timeout from now."""
        self.disarm(transport)
        if not transport.is_closing():
            loop = asyncio.get_running_loop()
            self._deadlines[transport] = loop.call_later(self.header_timeout_s, self._late, transport, address)

    def disarm(self, transport: asyncio.BaseTransport) -> None:
        deadline = self._deadlines.pop(transport, None)
        if deadline is not None:
            deadline.cancel()

    def _late(self, transport: asyncio.BaseTransport, address: str) -> None:
        self._deadlines.pop(transport, None)
        self._refuse(address, f"request headers not complete within {self.header_timeout_s:g} s")
        transport.abort()  # type: ignore[attr-defined]

    def _refuse(self, address: str, reason: str) -> None:
        self.on_refused(reason)
        more = self._throttle.allow(reason)
        if more is not None:
            log.warning("closed a connection from %s: %s%s", address, reason, more)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Runs once a request's headers are in: the deadline is off until the response is done."""
        transport = request.transport
        if transport is not None:
            self.disarm(transport)
        try:
            return await handler(request)
        finally:
            if transport is not None and request.remote is not None:
                self.arm(transport, request.remote)


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard: admitted, timed, then handed every event."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unix"
        if not self.guard.admit(address):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.address = address
        self.guard.arm(transport, address)
        self.inner.connection_made(transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is None:
            return
        self.guard.release(self.address, self._transport)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedRunner(web.AppRunner):
    """aiohttp's runner whose sites hand every new connection to `guard` first."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    @property
    def server(self) -> Any:
        server = super().server
        return None if server is None else self.guard.protocol_factory(server)
