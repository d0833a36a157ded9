"""python-socketio's client manager over sioplay's Redis connections.

Like python-socketio's own AsyncRedisManager, this backend only implements
`_publish` and `_listen`; the differences are why it exists:

- it publishes over one raw connection (`redis_wire`), so a connect burst
  never overflows a connection pool and loses broadcasts, and each PUBLISH costs
  a few microseconds instead of a pooled redis-py round trip;
- its subscriber reconnects with a back-off capped by a setting (seconds, not
  the library's 60 s), so a restarted Redis is heard again quickly;
- it calls the node back once a socket is fully connected (its CONNECT packet
  queued), so events sent from there can never overtake the CONNECT;
- room emits go through :class:`RoomBroadcaster` (see there);
- it hands python-socketio only messages of a known shape: python-socketio
  reads `data['method']` outside its own error handling, so a single bare JSON
  string on the channel would end its listener, which then subscribes again and
  misses whatever is published meanwhile. Malformed messages are dropped and
  counted instead, like those of the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager
from socketio.async_pubsub_manager import AsyncPubSubManager

from sioplay.node.redis_wire import RedisPublisher, RedisSubscriber

__all__ = ["ClusterRedisManager", "RoomBroadcaster"]

log = logging.getLogger(__name__)

ConnectedCallback = Callable[[str, str], Awaitable[None]]
DroppedCallback = Callable[[str], None]
# What python-socketio's pub/sub managers publish; anything else is not from a node.
MESSAGE_METHODS = frozenset({"emit", "callback", "disconnect", "enter_room", "leave_room", "close_room"})


class RoomBroadcaster(AsyncManager):
    """Local delivery of an emit: encoded once, queued for every recipient without a task each.

    python-socketio creates one asyncio task per recipient and awaits them all,
    which dominates a join storm in a large room. Here the packet goes straight
    into each socket's own engine.io send queue, the same queue the handshake,
    pings and every other packet of that socket go through, so frame order is
    kept. A socket whose queue already holds `max_backlog` packets is not
    reading: it is disconnected (its connection aborted, its backlog freed)
    with a logged reason instead of growing without bound.
    """

    max_backlog: int = 1000

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
        skipped = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        sockets = self.server.eio.sockets
        for sid, eio_sid in self.get_participants(namespace, to or room):
            if sid in skipped:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            if socket.queue.qsize() >= self.max_backlog:
                self._drop_slow_reader(sid, eio_sid, socket)
                continue
            for frame in frames:
                socket.queue.put_nowait(frame)

    def _drop_slow_reader(self, sid: str, eio_sid: str, socket: Any) -> None:
        log.warning(
            "disconnecting socket %s: it stopped reading (%d packets waiting, limit %d)",
            sid,
            socket.queue.qsize(),
            self.max_backlog,
        )
        while not socket.queue.empty():
            socket.queue.get_nowait()
            socket.queue.task_done()
        request = self.server.environ.get(eio_sid, {}).get("aiohttp.request")
        if request is not None and request.transport is not None:
            # Closing politely would queue a CLOSE frame behind a client that does not read.
            request.transport.abort()


class ClusterRedisManager(AsyncPubSubManager, RoomBroadcaster):
    """python-socketio's pub/sub manager on the bus's raw Redis connections (see `redis_wire`).

    Emits to a room travel to the other nodes through Redis; in a join storm
    that is one message per join for every node, so they take the same lean
    path as the bus, and a lost subscription is retried within
    `retry_max_s` instead of python-socketio's back-off of up to 60 s.
    """

    name = "sioplay-redis"

    def __init__(
        self,
        redis_url: str,
        publisher: RedisPublisher,
        channel: str,
        retry_max_s: float,
        max_backlog: int = 1000,
        max_message_bytes: int = 4 * 1024 * 1024,
        on_dropped: DroppedCallback | None = None,
    ) -> None:
        super().__init__(channel=channel, logger=logging.getLogger(__name__))
        self.redis_url = redis_url
        self.publisher = publisher
        self.retry_max_s = retry_max_s
        self.max_backlog = max_backlog
        self.max_message_bytes = max_message_bytes
        self.on_dropped = on_dropped
        self.on_connected: ConnectedCallback | None = None
        # Set while the subscription to the Socket.IO channel is live: a node opens its ports only then.
        self.subscribed = asyncio.Event()

    async def connect(self, sid: str, namespace: str) -> Any:
        result = await super().connect(sid, namespace)
        if self.on_connected is not None:
            await self.on_connected(sid, namespace)
        return result

    async def _publish(self, data: Any) -> None:
        payload = self.json.dumps(data).encode()
        for attempt in (1, 2):
            try:
                await self.publisher.publish(self.channel, payload)
                return
            except OSError as exc:
                log.warning("cannot publish to Redis (attempt %d of 2): %s", attempt, exc)

    async def _listen(self) -> AsyncIterator[bytes]:
        retry_s = min(0.1, self.retry_max_s)
        while True:
            # None marks the end of the subscription.
            received: asyncio.Queue[bytes | None] = asyncio.Queue()
            subscriber = RedisSubscriber(self.redis_url, [self.channel], received.put_nowait)
            ended = None
            try:
                await subscriber.subscribe()
                self.subscribed.set()
                retry_s = min(0.1, self.retry_max_s)
                ended = asyncio.ensure_future(self._mark_end(subscriber, received))
                while (data := await received.get()) is not None:
                    if (message := self._well_formed(data)) is not None:
                        yield message
            except OSError as exc:
                log.warning("lost the Redis subscription (%s); retrying in %.1f s", exc, retry_s)
            finally:
                self.subscribed.clear()
                subscriber.close()
                if ended is not None:
                    ended.cancel()
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, self.retry_max_s)

    def _well_formed(self, data: bytes) -> dict[str, Any] | None:
        """The decoded message, or None once it is dropped and counted."""
        if len(data) > self.max_message_bytes:
            reason = "socket.io message too large"
        else:
            try:
                message = self.json.loads(data)
            except ValueError:
                reason = "socket.io message is not JSON"
            else:
                if isinstance(message, dict) and message.get("method") in MESSAGE_METHODS:
                    return message
                reason = "socket.io message of unknown shape"
        log.warning("dropped a message on %s: %s (%d bytes)", self.channel, reason, len(data))
        if self.on_dropped is not None:
            self.on_dropped(reason)
        return None

    @staticmethod
    async def _mark_end(subscriber: RedisSubscriber, received: asyncio.Queue[bytes | None]) -> None:
        try:
            await subscriber.wait_closed()
            log.warning("the Redis subscription ended; subscribing again")
        except OSError as exc:
            log.warning("lost the Redis subscription (%s); subscribing again", exc)
        received.put_nowait(None)
