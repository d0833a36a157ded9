"""python-socketio's client manager over sioplay's Redis connection.

Like python-socketio's own AsyncRedisManager, this backend only implements
`_publish` and `_listen`; the differences are why it exists:

- it shares the node's bounded, blocking connection pool, so a connect burst
  waits for a connection instead of overflowing the pool and losing broadcasts;
- its subscriber reconnects with a back-off capped by a setting (seconds, not
  the library's 60 s), so a restarted Redis is heard again quickly;
- it calls the node back once a socket is fully connected (its CONNECT packet
  queued), so events sent from there can never overtake the CONNECT;
- room emits go through :class:`RoomBroadcaster` (see there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from engineio import packet as eio_packet
from redis.exceptions import RedisError
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager
from socketio.async_pubsub_manager import AsyncPubSubManager

__all__ = ["ClusterRedisManager", "RoomBroadcaster", "close_quietly"]

log = logging.getLogger(__name__)

ConnectedCallback = Callable[[str, str], Awaitable[None]]


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
        frames = [eio_packet.Packet(eio_packet.MESSAGE, part) for part in (encoded if isinstance(encoded, list) else [encoded])]
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
    name = "sioplay-redis"

    def __init__(self, redis: aioredis.Redis, channel: str, retry_max_s: float, max_backlog: int = 1000) -> None:
        super().__init__(channel=channel, logger=logging.getLogger(__name__))
        self.redis = redis
        self.retry_max_s = retry_max_s
        self.max_backlog = max_backlog
        self.on_connected: ConnectedCallback | None = None

    async def connect(self, sid: str, namespace: str) -> Any:
        result = await super().connect(sid, namespace)
        if self.on_connected is not None:
            await self.on_connected(sid, namespace)
        return result

    async def _publish(self, data: Any) -> None:
        payload = self.json.dumps(data)
        for attempt in (1, 2):
            try:
                await self.redis.publish(self.channel, payload)
                return
            except (RedisError, OSError) as exc:
                log.warning("cannot publish to Redis (attempt %d of 2): %s", attempt, exc)

    async def _listen(self) -> AsyncIterator[bytes]:
        retry_s = min(0.1, self.retry_max_s)
        channel = self.channel.encode()
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                retry_s = min(0.1, self.retry_max_s)
                async for message in pubsub.listen():
                    if message.get("type") == "message" and message.get("channel") == channel:
                        yield message["data"]
            except (RedisError, OSError) as exc:
                log.warning("lost the Redis subscription (%s); retrying in %.1f s", exc, retry_s)
            finally:
                await close_quietly(pubsub)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, self.retry_max_s)


async def close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        pass
