"""This node's part deltas on the bus, one per join or leave, in the order of the changes (`replica` mode).

Published in the order the socket table changed: each goes out on the one
publishing connection in the order it was handed over, so the other nodes
apply them in that order. `sent` is the version of the last delta written
(or, with `skip`, that would have been): what heartbeats announce, so that a
heartbeat never names a version whose delta is still waiting to be written.

`published()` lets a join wait until Redis took the delta before the client
gets its handshake: any query that reaches another node after the client's
handshake then finds the join there (see `Subscription.barrier`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sioplay.node.metrics import Metrics
from sioplay.node.roster_protocol import part_delta
from sioplay.node.sockets import LocalSocket

__all__ = ["PartFeed"]

log = logging.getLogger(__name__)


class PartFeed:
    """`changed` is the socket table's listener; `skip` (tests only) publishes nothing, as if every delta were lost."""

    def __init__(
        self, publish: Callable[[dict[str, Any]], Awaitable[int]], metrics: Metrics, skip: bool = False
    ) -> None:
        self.publish = publish
        self.metrics = metrics
        self.skip = skip
        self.sent = 0
        self._last: asyncio.Future[Any] | None = None

    def changed(self, seq: int, entry: LocalSocket, joined: bool) -> None:
        if self.skip:
            self.sent = seq
            return
        body = part_delta(seq, entry.room, entry.id_socket, entry.id_user, joined)
        task = asyncio.ensure_future(self._write(seq, body))
        task.add_done_callback(self._sent)
        self._last = task

    async def _write(self, seq: int, body: dict[str, Any]) -> int:
        # Handed to the publishing connection now, in this order: a heartbeat built from here on comes after it.
        self.sent = seq
        return await self.publish(body)

    def _sent(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # The other nodes see the gap at this node's next delta or heartbeat, and fetch its part.
            self.metrics.bus_errors += 1
            log.debug("part delta not published: %s", error)

    async def published(self, timeout_s: float) -> None:
        """Return once Redis took the last delta handed over, or failed to, or after `timeout_s`."""
        last = self._last
        if last is not None and not last.done():
            done, _ = await asyncio.wait({last}, timeout=timeout_s)
            if not done:
                # The other nodes may answer without this join until its delta (or this node's heartbeat) arrives.
                log.warning("a part delta was not taken by Redis within %g s; the handshake goes out anyway", timeout_s)
