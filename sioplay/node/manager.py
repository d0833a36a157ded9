"""python-socketio's client manager over the node's Redis connections.

Like python-socketio's own AsyncRedisManager, this backend only implements
`_publish` and `_listen`; the differences are why it exists:

- it publishes over the node's one raw connection (`redis_wire`), so a connect
  burst never overflows a connection pool and loses broadcasts, and each
  PUBLISH costs a few microseconds instead of a pooled redis-py round trip;
- it listens on the node's one `Subscription`, which resubscribes within a
  back-off capped by a setting (seconds, not the library's 60 s), so a
  restarted Redis is heard again quickly;
- it calls the node back once a socket is fully connected (its CONNECT packet
  queued), so events sent from there can never overtake the CONNECT;
- room emits go through `patches.RoomBroadcaster` (see there);
- it hands python-socketio only messages of a known shape: python-socketio
  reads `data['method']` outside its own error handling, so a single bare JSON
  string on the channel would end its listener, which then subscribes again and
  misses whatever is published meanwhile. Malformed messages are dropped and
  counted instead, like those of the bus.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from socketio.async_pubsub_manager import AsyncPubSubManager

from sioplay.node.patches import RoomBroadcaster
from sioplay.node.redis_wire import RedisPublisher, Subscription

__all__ = ["ClusterRedisManager"]

log = logging.getLogger(__name__)

ConnectedCallback = Callable[[str, str], Awaitable[None]]
DroppedCallback = Callable[[str], None]
# What python-socketio's pub/sub managers publish; anything else is not from a node.
MESSAGE_METHODS = frozenset({"emit", "callback", "disconnect", "enter_room", "leave_room", "close_room"})


class ClusterRedisManager(AsyncPubSubManager, RoomBroadcaster):  # type: ignore[misc]
    """python-socketio's pub/sub manager on the node's raw Redis connections (see `redis_wire`).

    Emits to a room travel to the other nodes through Redis; in a join storm
    that is one message per join for every node, so they take the same lean
    path as the bus.
    """

    name = "sioplay-redis"

    def __init__(
        self,
        publisher: RedisPublisher,
        subscription: Subscription,
        channel: str,
        max_backlog: int = 1000,
        max_message_bytes: int = 4 * 1024 * 1024,
        on_dropped: DroppedCallback | None = None,
        deliveries: collections.Counter[str] | None = None,
    ) -> None:
        super().__init__(channel=channel, logger=logging.getLogger(__name__))
        self.publisher = publisher
        self.subscription = subscription
        self.max_backlog = max_backlog
        self.deliveries = deliveries if deliveries is not None else collections.Counter()
        self.max_message_bytes = max_message_bytes
        self.on_dropped = on_dropped
        self.on_connected: ConnectedCallback | None = None
        self._received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscription.add(channel, self._receive)

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

    def _receive(self, data: bytes) -> None:
        message = self._well_formed(data)
        if message is not None:
            self._received.put_nowait(message)

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        # Never ends: the subscription, not this listener, survives a lost connection.
        while True:
            yield await self._received.get()

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
