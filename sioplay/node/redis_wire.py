"""Redis pub/sub for a node on raw connections: commands written in RESP, replies read by hiredis.

The profile of a 4-node roster query showed redis-py's per-message costs as
the largest share of what remained: each PUBLISH went through the connection
pool, the retry wrapper and its own awaited round trip, and each received
message through the same layers again. A node needs only PUBLISH, SUBSCRIBE,
UNSUBSCRIBE and AUTH, and /healthz a PING. Here:

- `RedisPublisher` keeps one connection and writes every PUBLISH of an
  event-loop tick in one write, matching the replies in order;
- `Subscription` is the node's one subscribed connection, carrying every
  channel of the node (the bus's and Socket.IO's), each message handed to its
  channel's handler straight from `data_received`. It owns the reconnect with
  back-off and the resubscription. A handler that raises is reported and the
  next message is handled: the connection is never closed for it.

Every message published is signed with the cluster's secret and every message
received is checked before its handler sees it (`signing`).

Both raise `ConnectionError` (an `OSError`) when Redis cannot be reached or
the connection is lost, like the socket errors their callers already handle.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from sioplay.common.redis_endpoint import RedisEndpoint, encode_command
from sioplay.log import Throttle
from sioplay.node.signing import MessageSigner
from sioplay.tasks import cancel_and_wait, report_death

__all__ = ["MessageHandler", "RedisPublisher", "Subscription", "open_connection"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes], None]
HandlerErrorSink = Callable[[str, BaseException], None]
ForgedSink = Callable[[str], None]

_LOG_EVERY_S = 10.0


async def open_connection(
    endpoint: RedisEndpoint, protocol_factory: Callable[[], asyncio.Protocol], connect_timeout_s: float
) -> Any:
    """A connection to `endpoint` speaking `protocol_factory()`'s protocol; ConnectionError if none in time."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout_s):
            if endpoint.path is not None:
                _, protocol = await loop.create_unix_connection(protocol_factory, endpoint.path)
            else:
                _, protocol = await loop.create_connection(
                    protocol_factory, endpoint.host, endpoint.port, ssl=endpoint.ssl_context()
                )
    except TimeoutError:
        raise ConnectionError(f"no connection to Redis within {connect_timeout_s:g} s") from None
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

    def send(self, command: bytes, replies: int = 1) -> asyncio.Future[Any]:
        """The last of the `replies` replies `command` gets (more than one when it holds several commands)."""
        if self.closed.done():
            raise ConnectionError("Redis connection is closed")
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        self.waiting.extend(waiters)
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(command)
        return asyncio.ensure_future(self._last(waiters)) if replies > 1 else waiters[0]

    @staticmethod
    async def _last(waiters: list[asyncio.Future[Any]]) -> Any:
        return (await asyncio.gather(*waiters))[-1]

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

    def __init__(self, endpoint: RedisEndpoint, signer: MessageSigner, connect_timeout_s: float = 2.0) -> None:
        self._endpoint = endpoint
        self._signer = signer
        self._connect_timeout_s = connect_timeout_s
        self._connection: _PublishConnection | None = None
        self._connecting: asyncio.Future[_PublishConnection] | None = None

    async def publish(self, channel: str, data: bytes) -> int:
        """How many subscribers received `data`; ConnectionError if Redis did not take it."""
        connection = await self._live()
        name = channel.encode()
        return int(await connection.send(encode_command("PUBLISH", name, self._signer.sign(name, data))))

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
        # Every caller that finds no connection waits for the same attempt; the attempt forgets itself.
        attempt = self._connecting
        if attempt is None:
            attempt = self._connecting = asyncio.ensure_future(self._open())
            attempt.add_done_callback(self._attempt_done)
        return await asyncio.shield(attempt)

    def _attempt_done(self, attempt: asyncio.Future[_PublishConnection]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            # Its callers saw the error; with none left, it must not be reported as never retrieved.
            attempt.exception()

    async def _open(self) -> _PublishConnection:
        connection: _PublishConnection = await open_connection(
            self._endpoint, _PublishConnection, self._connect_timeout_s
        )
        handshake = self._endpoint.handshake()
        if handshake:
            try:
                await connection.send(handshake, self._endpoint.handshake_replies)
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
    def __init__(self, channels: Sequence[bytes], dispatch: Callable[[bytes, bytes], None], handshake: bytes) -> None:
        super().__init__()
        self.channels = set(channels)
        self.dispatch = dispatch
        self.handshake = handshake
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed: set[bytes] = set()
        self._unsubscribing: dict[bytes, asyncio.Future[None]] = {}
        self._pongs: collections.deque[asyncio.Future[None]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.handshake + encode_command("SUBSCRIBE", *sorted(self.channels)))

    def unsubscribe(self, channels: Sequence[bytes]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        waits = [self._unsubscribing.setdefault(channel, loop.create_future()) for channel in channels]
        if self.transport is not None and not self.closed.done():
            self.transport.write(encode_command("UNSUBSCRIBE", *channels))
        return waits

    def ping(self) -> asyncio.Future[None]:
        """Done once Redis answered a PING sent now: every message it sent this connection before is handled."""
        if self.transport is None or self.closed.done():
            raise ConnectionError("the Redis subscription is closed")
        waiter = asyncio.get_running_loop().create_future()
        self._pongs.append(waiter)
        self.transport.write(encode_command("PING"))
        return waiter

    def on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"pong":
            # A subscribed connection answers PING in its stream of messages, in order.
            if self._pongs:
                waiter = self._pongs.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif isinstance(reply, list) and len(reply) == 3:
            kind, channel = reply[0], reply[1]
            if kind == b"message":
                self.dispatch(channel, reply[2])
            elif kind == b"subscribe":
                self._confirmed.add(channel)
                if self._confirmed >= self.channels and not self.subscribed.done():
                    self.subscribed.set_result(None)
            elif kind == b"unsubscribe":
                self._confirmed.discard(channel)
                self.channels.discard(channel)
                waiter = self._unsubscribing.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        elif isinstance(reply, hiredis.ReplyError):
            self.fail(ConnectionError(f"Redis refused the subscription: {reply}"))

    def fail(self, error: ConnectionError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(error)
            self.subscribed.exception()
        for waiter in self._unsubscribing.values():
            if not waiter.done():
                # A lost connection has unsubscribed everything.
                waiter.set_result(None)
        while self._pongs:
            pong = self._pongs.popleft()
            if not pong.done():
                pong.set_exception(error)
                pong.exception()
        super().fail(error)


class Subscription:
    """The node's one subscribed connection: every channel on it, resubscribed until `stop()`.

    Channels are added before `start()`; `subscribed` is set while every one of
    them is confirmed by Redis, and `on_subscribed` callbacks run each time that
    becomes true again (a node announces itself after a reconnect).
    """

    def __init__(
        self,
        endpoint: RedisEndpoint,
        signer: MessageSigner,
        retry_max_s: float,
        on_handler_error: HandlerErrorSink | None = None,
        on_forged: ForgedSink | None = None,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._endpoint = endpoint
        self._signer = signer
        self.retry_max_s = retry_max_s
        self.connect_timeout_s = connect_timeout_s
        self.on_handler_error = on_handler_error
        self.on_forged = on_forged
        self.subscribed = asyncio.Event()
        self._handlers: dict[bytes, MessageHandler] = {}
        self._on_subscribed: list[Callable[[], None]] = []
        self._connection: _SubscribeConnection | None = None
        self._task: asyncio.Task[None] | None = None
        # Why the subscription stopped for good (its task died); None while it lives or was stopped.
        self.failure: str | None = None
        self._log_errors = Throttle(_LOG_EVERY_S)

    def add(self, channel: str, handler: MessageHandler) -> None:
        if self._task is not None:
            raise RuntimeError("channels are added before the subscription starts")
        self._handlers[channel.encode()] = handler

    def on_subscribed(self, callback: Callable[[], None]) -> None:
        self._on_subscribed.append(callback)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-subscription")
        report_death(self._task, self._failed)

    def _failed(self, reason: str) -> None:
        self.failure = self.failure or reason

    async def barrier(self) -> None:
        """Return once every message Redis published to this node before now has been handled.

        A PING on the subscribed connection: Redis answers it after whatever it
        already sent here. ConnectionError while not subscribed.
        """
        connection = self._connection
        if connection is None or not self.subscribed.is_set():
            raise ConnectionError("not subscribed to Redis")
        await connection.ping()

    async def remove(self, channels: Sequence[str], timeout_s: float) -> None:
        """Stop receiving `channels`, also after a reconnect; returns once Redis confirmed it or `timeout_s` passed."""
        names = [channel.encode() for channel in channels if channel.encode() in self._handlers]
        for name in names:
            del self._handlers[name]
        connection = self._connection
        if not names or connection is None or connection.closed.done():
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*connection.unsubscribe(names))
        except TimeoutError:
            log.warning("Redis did not confirm the unsubscription within %g s", timeout_s)

    async def stop(self, timeout_s: float) -> bool:
        """Close the connection and stop resubscribing; False if the task outlived `timeout_s`."""
        self.subscribed.clear()
        task, self._task = self._task, None
        if self._connection is not None:
            self._connection.close()
        return task is None or await cancel_and_wait(task, timeout_s)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        payload = self._signer.verify(channel, data)
        if payload is None:
            self._forged(channel.decode(errors="replace"), len(data))
            return
        try:
            handler(payload)
        except Exception as exc:  # noqa: BLE001 - one bad message must not deafen the node
            name = channel.decode(errors="replace")
            if self.on_handler_error is not None:
                self.on_handler_error(name, exc)
            more = self._log_errors.allow(name)
            if more is not None:
                log.error("a handler of channel %s raised %s: %s%s", name, type(exc).__name__, exc, more, exc_info=exc)

    def _forged(self, name: str, size: int) -> None:
        if self.on_forged is not None:
            self.on_forged(name)
        more = self._log_errors.allow(f"forged:{name}")
        if more is not None:
            log.warning("dropped a message on %s without a valid signature (%d bytes)%s", name, size, more)

    async def _run(self) -> None:
        retry_s = min(0.1, self.retry_max_s)
        while True:
            try:
                await self._subscribe_once()
                retry_s = min(0.1, self.retry_max_s)
                for callback in self._on_subscribed:
                    callback()
                assert self._connection is not None
                await self._connection.closed
                log.warning("the Redis subscription ended; subscribing again")
            except OSError as exc:
                log.warning("lost the Redis subscription (%s); retrying in %.1f s", exc, retry_s)
            finally:
                self.subscribed.clear()
                if self._connection is not None:
                    self._connection.close()
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, self.retry_max_s)

    async def _subscribe_once(self) -> None:
        channels = list(self._handlers)
        connection: _SubscribeConnection = await open_connection(
            self._endpoint,
            lambda: _SubscribeConnection(channels, self._dispatch, self._endpoint.handshake()),
            self.connect_timeout_s,
        )
        self._connection = connection
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await connection.subscribed
        except TimeoutError:
            connection.fail(ConnectionError("Redis did not confirm the subscription in time"))
            raise ConnectionError("Redis did not confirm the subscription in time") from None
        self.subscribed.set()
