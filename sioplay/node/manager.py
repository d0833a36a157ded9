"""python-socketio's client manager over sioplay's Redis connection.

Like python-socketio's own AsyncRedisManager, this backend only implements
`_publish` and `_listen`; the differences are why it exists:

- it shares the node's bounded, blocking connection pool, so a connect burst
  waits for a connection instead of overflowing the pool and losing broadcasts;
- its subscriber reconnects with a back-off capped by a setting (seconds, not
  the library's 60 s), so a restarted Redis is heard again quickly;
- it calls the node back once a socket is fully connected (its CONNECT packet
  queued), so events sent from there can never overtake the CONNECT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from socketio.async_pubsub_manager import AsyncPubSubManager

__all__ = ["ClusterRedisManager"]

log = logging.getLogger(__name__)

ConnectedCallback = Callable[[str, str], Awaitable[None]]


class ClusterRedisManager(AsyncPubSubManager):
    name = "sioplay-redis"

    def __init__(self, redis: aioredis.Redis, channel: str, retry_max_s: float) -> None:
        super().__init__(channel=channel, logger=logging.getLogger(__name__))
        self.redis = redis
        self.retry_max_s = retry_max_s
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
                await _close_quietly(pubsub)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, self.retry_max_s)


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        pass
