"""Node-to-node request/response over Redis pub/sub, and the membership that tells who must answer.

Channels, namespaced by the cluster name:

- ``{cluster}:bus`` carries what every node hears: hello, heartbeat, goodbye, requests;
- ``{cluster}:bus:{instance}`` carries the replies meant for one node process only.

A request is published once for the whole cluster. PUBLISH returns how many
subscribers received it, so the requesting node knows how many nodes must
answer even before it has heard from all of them; membership (heartbeats) tells
it which. It returns as soon as every one has answered, stops waiting for a
node that says goodbye or falls silent, and otherwise returns at the deadline
with what it has, marked partial.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sioplay.errors import BusError
from sioplay.node.envelope import REPLY_KINDS, REQUEST_KINDS, Envelope, Kind, decode, encode
from sioplay.node.membership import Membership, Peer
from sioplay.node.metrics import Metrics
from sioplay.node.redis_wire import RedisPublisher, RedisSubscriber
from sioplay.settings import Settings
from sioplay.tasks import cancel_and_wait

__all__ = ["ClusterBus", "QueryOutcome", "Reply"]

log = logging.getLogger(__name__)

RequestHandler = Callable[[Envelope], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    node_id: str
    instance: str
    body: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What came back from the other nodes for one request."""

    replies: list[Reply]
    expected: int
    missing: list[str]
    took_ms: float
    error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing and self.error is None


@dataclasses.dataclass(slots=True)
class _Pending:
    expected: dict[str, str]
    done: asyncio.Event
    replies: dict[str, Reply] = dataclasses.field(default_factory=dict)
    gone: dict[str, str] = dataclasses.field(default_factory=dict)
    subscribers: int = 0

    def settle(self) -> None:
        if all(instance in self.replies for instance in self.expected) and len(self.replies) >= self.subscribers:
            self.done.set()

    def missing(self) -> list[str]:
        names = [node for instance, node in self.expected.items() if instance not in self.replies]
        names += [node for instance, node in self.gone.items() if instance not in self.replies]
        unheard = self.subscribers - len(self.replies) - sum(1 for i in self.expected if i not in self.replies)
        if unheard > 0:
            names.append(f"{unheard} unannounced node(s)")
        return sorted(set(names))


class ClusterBus:
    def __init__(
        self,
        redis_url: str,
        publisher: RedisPublisher,
        settings: Settings,
        node_id: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis_url = redis_url
        self.publisher = publisher
        self.settings = settings
        self.node_id = node_id
        self.instance = uuid.uuid4().hex[:16]
        self.metrics = metrics
        self.clock = clock
        self.channel = f"{settings.cluster}:bus"
        self.direct_channel = f"{self.channel}:{self.instance}"
        self.silence_s = settings.heartbeat_interval_s * settings.heartbeat_misses
        self.membership = Membership(self.silence_s, on_gone=self._peer_gone)
        self.handlers: dict[str, RequestHandler] = {}
        self.presence: Callable[[], int] = lambda: 0
        self.started_at = clock()
        self._heard_self_at: float | None = None
        self._unheard_since: float | None = None
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set while the subscription to the bus channels is live, like the Socket.IO manager's.
        self.subscribed = asyncio.Event()
        self._runners: list[asyncio.Task[None]] = []

    # Lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Listen, send heartbeats and expire silent peers until `stop()`."""
        self._runners = [
            asyncio.create_task(self._listen(), name="bus-listen"),
            asyncio.create_task(self._beat(), name="bus-heartbeat"),
        ]

    async def stop(self, timeout: float) -> bool:
        """Stop listening and beating, and say goodbye; False if a task outlived `timeout`.

        Each task is cancelled on its own: a TaskGroup would not pass on a
        second cancel to a child that lost the first (see `cancel_and_wait`).
        """
        runners, self._runners = self._runners, []
        stopped = await asyncio.gather(*(cancel_and_wait(task, timeout) for task in runners))
        self.subscribed.clear()
        await self.say_goodbye()
        return all(stopped)

    async def say_goodbye(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self._publish(self.channel, "goodbye", {})
        except (OSError, TimeoutError) as exc:
            log.warning("could not say goodbye on the bus: %s", exc)

    @property
    def linked(self) -> bool:
        """True while subscribed and no heartbeat of ours has gone unheard for longer than the silence.

        Counted from when a heartbeat was sent, not from when one was last heard, so
        that a node whose event loop is merely busy (a join storm) stays linked.
        """
        if not self.subscribed.is_set() or self._heard_self_at is None:
            return False
        return self._unheard_since is None or self.clock() - self._unheard_since <= self.silence_s

    def _hears_itself(self, now: float) -> bool:
        return self._heard_self_at is not None and now - self._heard_self_at <= self.silence_s

    def live_nodes(self) -> list[Peer]:
        return self.membership.peers()

    # Queries -----------------------------------------------------------------------------

    async def request(self, kind: Kind, body: dict[str, Any], timeout: float) -> QueryOutcome:
        """Ask every other node once; see the module docstring for when this returns."""
        started = self.clock()
        peers = {peer.instance: peer.node_id for peer in self.membership.peers()}
        if not self.linked:
            return self._outcome_without_bus(peers, started, "not connected to the cluster bus (Redis)")
        if not peers and started - self.started_at > self.silence_s:
            return QueryOutcome(replies=[], expected=0, missing=[], took_ms=self._ms_since(started))
        request_id = uuid.uuid4().hex
        pending = _Pending(expected=peers, done=asyncio.Event())
        self._pending[request_id] = pending
        try:
            async with asyncio.timeout(timeout):
                receivers = await self._publish(self.channel, kind, body, request_id)
                # PUBLISH counts this node's own subscription too.
                pending.subscribers = max(int(receivers) - 1, 0)
                pending.settle()
                await pending.done.wait()
        except TimeoutError:
            self.metrics.timeouts += 1
        except OSError as exc:
            self.metrics.bus_errors += 1
            return self._outcome_without_bus(peers, started, f"Redis unavailable: {exc}")
        finally:
            del self._pending[request_id]
        return QueryOutcome(
            replies=list(pending.replies.values()),
            expected=max(len(peers), pending.subscribers),
            missing=pending.missing(),
            took_ms=self._ms_since(started),
        )

    def _outcome_without_bus(self, peers: dict[str, str], started: float, error: str) -> QueryOutcome:
        return QueryOutcome(
            replies=[],
            expected=len(peers),
            missing=sorted(peers.values()),
            took_ms=self._ms_since(started),
            error=error,
        )

    def _ms_since(self, started: float) -> float:
        return round((self.clock() - started) * 1000, 3)

    # Receiving ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        retry_s = min(0.1, self.settings.redis_retry_max_s)
        while True:
            subscriber = RedisSubscriber(self.redis_url, [self.channel, self.direct_channel], self._receive)
            try:
                await subscriber.subscribe()
                self.subscribed.set()
                retry_s = min(0.1, self.settings.redis_retry_max_s)
                await self._publish(self.channel, "hello", {"sockets": self.presence()})
                await subscriber.wait_closed()
            except OSError as exc:
                self.subscribed.clear()
                log.warning("bus lost its Redis subscription (%s); retrying in %.1f s", exc, retry_s)
            finally:
                subscriber.close()
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, self.settings.redis_retry_max_s)

    def _receive(self, raw: bytes) -> None:
        try:
            envelope = decode(raw, self.settings.bus_max_message_bytes)
        except BusError as exc:
            self.metrics.dropped(str(exc).split(" (")[0])
            log.warning("dropped a bus message: %s", exc)
            return
        now = self.clock()
        if envelope.instance == self.instance:
            self._heard_self_at = now
            self._unheard_since = None
            return
        if envelope.kind == "goodbye":
            self.membership.gone(envelope.instance, "goodbye")
            return
        if envelope.kind in ("hello", "heartbeat"):
            is_new = self.membership.seen(envelope.origin, envelope.instance, now, envelope.body.get("sockets"))
            if envelope.kind == "hello" or is_new:
                # Let a newcomer know about this node now rather than at its next heartbeat.
                self._spawn(self._publish(self.channel, "heartbeat", {"sockets": self.presence()}))
        elif envelope.instance in self.membership:
            # Only presence messages make a member; anything else is merely a sign of life.
            self.membership.seen(envelope.origin, envelope.instance, now)
        if envelope.kind in REQUEST_KINDS:
            self._answer(envelope)
        elif envelope.kind in REPLY_KINDS:
            self._collect(envelope)

    def _answer(self, envelope: Envelope) -> None:
        handler = self.handlers.get(envelope.kind)
        if handler is None:
            self.metrics.dropped("no handler")
            return
        body = handler(envelope)
        reply_kind: Kind = "roster-reply" if envelope.kind == "roster-request" else "rooms-reply"
        self._spawn(self._publish(f"{self.channel}:{envelope.instance}", reply_kind, body, envelope.request_id))

    def _collect(self, envelope: Envelope) -> None:
        pending = self._pending.get(envelope.request_id or "")
        if pending is None:
            self.metrics.dropped("reply to unknown request")
            return
        pending.replies[envelope.instance] = Reply(envelope.origin, envelope.instance, envelope.body)
        pending.settle()

    def _peer_gone(self, peer: Peer, reason: str) -> None:
        log.info("node %s (%s) left the cluster: %s", peer.node_id, peer.instance, reason)
        for pending in self._pending.values():
            if pending.expected.pop(peer.instance, None) is not None and peer.instance not in pending.replies:
                pending.gone[peer.instance] = peer.node_id
                pending.subscribers = max(pending.subscribers - 1, 0)
                pending.settle()

    # Sending -----------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            try:
                await self._publish(self.channel, "heartbeat", {"sockets": self.presence()})
                if self._unheard_since is None:
                    self._unheard_since = self.clock()
            except OSError as exc:
                self.metrics.bus_errors += 1
                log.debug("heartbeat not sent: %s", exc)
            now = self.clock()
            if self._hears_itself(now):
                self.membership.expire(now)
            else:
                # Our own messages are not getting through (or not yet read), so the
                # silence of the others proves nothing.
                self.membership.touch_all(now)
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _publish(self, channel: str, kind: Kind, body: dict[str, Any], request_id: str | None = None) -> int:
        envelope = Envelope(kind=kind, origin=self.node_id, instance=self.instance, body=body, request_id=request_id)
        return await self.publisher.publish(channel, encode(envelope))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._quietly(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, coroutine: Awaitable[Any]) -> None:
        try:
            await coroutine
        except OSError as exc:
            self.metrics.bus_errors += 1
            log.warning("bus publish failed: %s", exc)
