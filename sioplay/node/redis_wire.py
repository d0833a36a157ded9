"""Redis pub/sub for the cluster bus on raw connections: commands written in RESP, replies read by hiredis.

The profile of a 4-node roster query showed redis-py's per-message costs as
the largest share of what remained: each PUBLISH went through the connection
pool, the retry wrapper and its own awaited round trip, and each received
message through the same layers again. The bus needs only PUBLISH, SUBSCRIBE
and AUTH, and /healthz a PING. Here a publisher keeps one connection and
writes every PUBLISH of an event-loop tick in one write, matching the replies
in order; a subscriber hands each message to a callback straight from
`data_received`.

Both raise `ConnectionError` (an `OSError`) when Redis cannot be reached or
the connection is lost, like the socket errors the bus already handles.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

__all__ = ["RedisPublisher", "RedisSubscriber", "encode_command"]


def encode_command(*parts: bytes | str) -> bytes:
    """One command in RESP: an array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


class _Endpoint:
    """Where a redis:// or rediss:// or unix:// URL points, and the AUTH it needs."""

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        options = parse_url(url)
        self.path: str | None = options.get("path")
        self.host: str = options.get("host", "127.0.0.1")
        self.port: int = int(options.get("port", 6379))
        self.tls = url.startswith("rediss://")
        self.connect_timeout_s = connect_timeout_s
        password, username = options.get("password"), options.get("username")
        self.auth: bytes | None = None
        if password is not None:
            self.auth = encode_command("AUTH", *([username] if username else []), password)

    async def open(self, protocol_factory: Callable[[], asyncio.Protocol]) -> Any:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path is not None:
                    _, protocol = await loop.create_unix_connection(protocol_factory, self.path)
                else:
                    context = ssl.create_default_context() if self.tls else None
                    _, protocol = await loop.create_connection(protocol_factory, self.host, self.port, ssl=context)
        except TimeoutError:
            raise ConnectionError(f"no connection to Redis within {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise ConnectionError(f"cannot connect to Redis: {exc}") from exc
        return protocol


class _Connection(asyncio.Protocol):
    """A connection whose replies hiredis parses; what to do with each is the subclass's."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                self.on_reply(reply)
        except hiredis.ProtocolError as exc:
            self.fail(ConnectionError(f"Redis protocol error: {exc}"))

    def on_reply(self, reply: Any) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def fail(self, error: ConnectionError) -> None:
        if not self.closed.done():
            self.closed.set_exception(error)
            # Whoever awaits `closed` sees the error; nobody may be, so mark it retrieved.
            self.closed.exception()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.closed.done():
            self.closed.set_result(None)


class _PublishConnection(_Connection):
    def __init__(self) -> None:
        super().__init__()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.outgoing: list[bytes] = []

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed.done():
            raise ConnectionError("Redis connection is closed")
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(reply)
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outgoing.append(command)
        return reply

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed.done():
            self.transport.writelines(outgoing)

    def on_reply(self, reply: Any) -> None:
        if not self.waiting:
            self.fail(ConnectionError("Redis sent a reply nobody asked for"))
            return
        waiter = self.waiting.popleft()
        if waiter.done():
            return
        if isinstance(reply, hiredis.ReplyError):
            waiter.set_exception(ConnectionError(f"Redis refused: {reply}"))
        else:
            waiter.set_result(reply)

    def fail(self, error: ConnectionError) -> None:
        super().fail(error)
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class RedisPublisher:
    """PUBLISH (and PING) over one connection, opened on first use and again after it is lost."""

    def __init__(self, url: str, connect_timeout_s: float = 2.0) -> None:
        self._endpoint = _Endpoint(url, connect_timeout_s)
        self._connection: _PublishConnection | None = None
        self._connecting: asyncio.Task[_PublishConnection] | None = None

    async def publish(self, channel: str, data: bytes) -> int:
        """How many subscribers received `data`; ConnectionError if Redis did not take it."""
        connection = await self._live()
        return int(await connection.send(encode_command("PUBLISH", channel, data)))

    async def ping(self) -> None:
        """A round trip on the publishing connection itself: what /healthz reports is what the emits use."""
        connection = await self._live()
        await connection.send(encode_command("PING"))

    async def _live(self) -> _PublishConnection:
        connection = self._connection
        if connection is None or connection.closed.done():
            connection = await self._connect()
        return connection

    async def _connect(self) -> _PublishConnection:
        # Publishes that find no connection wait for the same attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting.done():
                self._connecting = None

    async def _open(self) -> _PublishConnection:
        connection: _PublishConnection = await self._endpoint.open(_PublishConnection)
        if self._endpoint.auth is not None:
            try:
                await connection.send(self._endpoint.auth)
            except ConnectionError:
                connection.close()
                raise
        self._connection = connection
        return connection

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _SubscribeConnection(_Connection):
    def __init__(self, channels: Sequence[str], on_message: Callable[[bytes], None], auth: bytes | None) -> None:
        super().__init__()
        self.channels = channels
        self.on_message = on_message
        self.auth = auth
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write((self.auth or b"") + encode_command("SUBSCRIBE", *self.channels))

    def on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            if reply[0] == b"message":
                self.on_message(reply[2])
            elif reply[0] == b"subscribe":
                self._confirmed += 1
                if self._confirmed == len(self.channels) and not self.subscribed.done():
                    self.subscribed.set_result(None)
        elif isinstance(reply, hiredis.ReplyError):
            self.fail(ConnectionError(f"Redis refused the subscription: {reply}"))

    def fail(self, error: ConnectionError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(error)
            self.subscribed.exception()
        super().fail(error)


class RedisSubscriber:
    """One subscription: `on_message(data)` for every message on `channels` until the connection ends."""

    def __init__(
        self, url: str, channels: Sequence[str], on_message: Callable[[bytes], None], connect_timeout_s: float = 2.0
    ) -> None:
        self._endpoint = _Endpoint(url, connect_timeout_s)
        self.channels = channels
        self.on_message = on_message
        self._connection: _SubscribeConnection | None = None

    async def subscribe(self) -> None:
        """Connect and subscribe; ConnectionError if Redis does not confirm in time."""
        connection: _SubscribeConnection = await self._endpoint.open(
            lambda: _SubscribeConnection(self.channels, self.on_message, self._endpoint.auth)
        )
        self._connection = connection
        try:
            async with asyncio.timeout(self._endpoint.connect_timeout_s):
                await connection.subscribed
        except TimeoutError:
            connection.fail(ConnectionError("Redis did not confirm the subscription in time"))
            raise ConnectionError("Redis did not confirm the subscription in time") from None

    async def wait_closed(self) -> None:
        """Return when the subscription ended by `close()`; ConnectionError when it was lost."""
        assert self._connection is not None
        await self._connection.closed

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
