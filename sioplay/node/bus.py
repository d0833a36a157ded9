"""Node-to-node request/response over Redis pub/sub, and the membership that tells who must answer.

Channels, namespaced by the cluster name:

- ``{cluster}:bus`` carries what every node hears: hello, heartbeat, goodbye, requests, part deltas;
- ``{cluster}:bus:{instance}`` carries the replies meant for one node process only, and the requests asked
  of that process alone (`request_one`, the `replica` roster mode's fetches and asks).

A request is published once for the whole cluster. PUBLISH returns how many
subscribers received it, so the requesting node knows how many nodes must
answer even before it has heard from all of them; membership (heartbeats) tells
it which. It returns as soon as every one has answered, stops waiting for a
node that says goodbye or falls silent, and otherwise returns at the deadline
with what it has, marked partial.

The subscriber count is a hint; heartbeats decide. A node declared down after
missing its heartbeats may still be counted by Redis (a frozen process keeps
its connection): as long as it is not heard again, the subscribers nobody can
account for are taken to be such nodes, not waited for, and named as missing.
So is an observer (a process that announced it only listens, as another
supervisor's start-up check), until it says goodbye or the silence passes, and
a live process refused for an id another instance holds (`id_conflicts`):
it does not answer this node, or its answer is refused, so the query does not
wait for it and names it `NODE (duplicate id)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from sioplay.errors import BusError
from sioplay.node.bus_message import (
    HOSTNAME_MAX,
    MAX_REFUSING,
    REPLY_KINDS,
    REQUEST_KINDS,
    BusMessage,
    Kind,
    decode,
    encode,
)
from sioplay.node.id_conflicts import IdConflicts
from sioplay.node.membership import Membership, Peer
from sioplay.node.metrics import Metrics
from sioplay.node.redis_wire import RedisPublisher, Subscription
from sioplay.node.roster_protocol import REPLY_KIND
from sioplay.settings import Settings
from sioplay.tasks import cancel_and_wait, report_death

__all__ = ["ClusterBus", "PartListener", "PeerReply", "QueryOutcome", "RequestHandler", "new_instance_id"]

log = logging.getLogger(__name__)

# Observers remembered at most; past this the oldest are forgotten (and waited for, as unannounced).
MAX_OBSERVERS = 16
# A request's body in, this node's reply body out.
RequestHandler = Callable[[BusMessage], dict[str, Any]]


class PartListener(Protocol):
    """What the `replica` roster mode hears of the other nodes' parts (see `roster_replicas`)."""

    def presence(self, node_id: str, instance: str, seq: int | None, now: float) -> None:
        """A member's hello or heartbeat; `seq` is its part's version, None if it publishes no deltas."""

    def delta(self, message: BusMessage, now: float) -> None:
        """A member's part-delta."""

    def gone(self, instance: str) -> None:
        """A member left (goodbye) or was declared silent."""

    def relinked(self) -> None:
        """This node's subscription was (re)established: whatever it held may have missed messages."""


def new_instance_id() -> str:
    """The id of one node process: a restarted node is a new instance under the same node id."""
    return uuid.uuid4().hex[:16]


@dataclasses.dataclass(frozen=True, slots=True)
class PeerReply:
    node_id: str
    instance: str
    body: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What came back from the other nodes for one request."""

    replies: list[PeerReply]
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
    replies: dict[str, PeerReply] = dataclasses.field(default_factory=dict)
    gone: dict[str, str] = dataclasses.field(default_factory=dict)
    # Replies from processes refused for an id another instance holds (instance -> node id).
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    # Peers declared down before the request (instance -> node id, the most recent last).
    presumed_down: dict[str, str] = dataclasses.field(default_factory=dict)
    # Live processes known to claim an id another instance holds (instance -> node id): subscribed, but
    # neither side answers the other, so they are not waited for, as the peers declared down.
    conflicting: dict[str, str] = dataclasses.field(default_factory=dict)
    # Members that say they refuse this node (its id is held twice and they heard the other instance first).
    refusing_us: dict[str, str] = dataclasses.field(default_factory=dict)
    # Subscribers that announced they only listen.
    observers: int = 0
    subscribers: int = 0

    def _unheard(self) -> int:
        """Subscribers that neither answered nor are expected peers."""
        waited = sum(1 for instance in self.expected if instance not in self.replies)
        refusing = sum(1 for instance in self.refusing_us if instance not in self.replies)
        return self.subscribers - len(self.replies) - len(self.refused) - refusing - waited

    def _silent_conflicts(self) -> list[str]:
        return [node for instance, node in self.conflicting.items() if instance not in self.refused]

    def settle(self) -> None:
        accounted = self.observers + len(self.presumed_down) + len(self._silent_conflicts())
        if all(instance in self.replies for instance in self.expected) and self._unheard() <= accounted:
            self.done.set()

    def missing(self) -> list[str]:
        names = [node for instance, node in self.expected.items() if instance not in self.replies]
        names += [node for instance, node in self.gone.items() if instance not in self.replies]
        names += [f"{node} (duplicate id)" for node in self.refused.values()]
        names += [
            f"{node} (refuses this node's duplicate id)"
            for instance, node in self.refusing_us.items()
            if instance not in self.replies
        ]
        unheard = self._unheard() - self.observers
        conflicts = self._silent_conflicts()[: max(unheard, 0)]
        names += [f"{node} (duplicate id)" for node in conflicts]
        unheard -= len(conflicts)
        if unheard > 0:
            down = list(self.presumed_down.values())[-unheard:]
            names += down
            if unheard > len(down):
                names.append(f"{unheard - len(down)} unannounced node(s)")
        return sorted(set(names))


class ClusterBus:
    """This node on the bus: its presence, its answers to the others' requests, and its own requests.

    `handlers` answer the request kinds (see `roster_protocol`); `presence`
    is how many sockets this node holds, sent with every heartbeat.
    """

    def __init__(
        self,
        publisher: RedisPublisher,
        subscription: Subscription,
        settings: Settings,
        node_id: str,
        instance: str,
        metrics: Metrics,
        handlers: Mapping[str, RequestHandler],
        presence: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        part_seq: Callable[[], int] | None = None,
    ) -> None:
        self.publisher = publisher
        self.subscription = subscription
        self.settings = settings
        self.node_id = node_id
        self.instance = instance
        self.metrics = metrics
        self.clock = clock
        self.channel = f"{settings.cluster}:bus"
        self.direct_channel = f"{self.channel}:{self.instance}"
        self.silence_s = settings.heartbeat_interval_s * settings.heartbeat_misses
        self.membership = Membership(self.silence_s, on_gone=self._peer_gone)
        self.conflicts = IdConflicts(self.silence_s)
        self.handlers = dict(handlers)
        self.presence = presence
        # The version of this node's part, sent with every presence message by a node that publishes its deltas.
        self.part_seq = part_seq
        self.parts: PartListener | None = None
        # Subscribers of the bus channel at the last heartbeat that are neither this node, a member nor an
        # observer: nodes declared down that Redis still counts, not yet heard, or refused duplicates. An answer
        # without asking cannot account for them.
        self.unaccounted = 0
        # When `unaccounted` was last counted (a heartbeat's PUBLISH answered); None before the first.
        self.counted_at: float | None = None
        self.started_at = clock()
        self._hostname = socket.gethostname()[:HOSTNAME_MAX]
        self._heard_self_at: float | None = None
        self._unheard_since: float | None = None
        self._pending: dict[str, _Pending] = {}
        # Observers (instance -> when announced), forgotten at their goodbye or after the silence.
        self._observers: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beating: asyncio.Task[None] | None = None
        self._leaving = False
        # Why this node cannot be on the bus any more (a background task died); it is then never linked.
        self.failure: str | None = None
        subscription.add(self.channel, self._receive)
        subscription.add(self.direct_channel, self._receive)
        subscription.on_subscribed(self._announce)

    # Lifecycle ---------------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return self.subscription.subscribed.is_set() and not self._leaving

    def start(self) -> None:
        """Send heartbeats and expire silent peers until `stop()`; listening is the subscription's."""
        self._beating = asyncio.create_task(self._beat(), name="bus-heartbeat")
        report_death(self._beating, self._failed)

    def _failed(self, reason: str) -> None:
        self.failure = self.failure or reason

    async def stop(self, timeout_s: float) -> bool:
        """Stop beating and listening, and say goodbye; False if the heartbeat outlived `timeout_s`.

        The bus channels are unsubscribed before the goodbye: a node still
        subscribed is counted by every PUBLISH, and the others would wait for it.
        """
        self._leaving = True
        beating, self._beating = self._beating, None
        stopped = beating is None or await cancel_and_wait(beating, timeout_s)
        await self.subscription.remove([self.channel, self.direct_channel], timeout_s)
        await self.say_goodbye()
        return stopped

    def _announce(self) -> None:
        if self.parts is not None:
            self.parts.relinked()
        if not self._leaving:
            self._in_background(self._publish(self.channel, "hello", self._presence_body()))

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
        if self.failure is not None or self.subscription.failure is not None:
            return False
        if not self.subscribed or self._heard_self_at is None:
            return False
        return self._unheard_since is None or self.clock() - self._unheard_since <= self.silence_s

    def _hears_itself(self, now: float) -> bool:
        return self._heard_self_at is not None and now - self._heard_self_at <= self.silence_s

    def live_nodes(self) -> list[Peer]:
        return self.membership.peers()

    # Queries -----------------------------------------------------------------------------

    async def request(self, kind: Kind, body: dict[str, Any], timeout_s: float) -> QueryOutcome:
        """Ask every other node once; see the module docstring for when this returns."""
        started = self.clock()
        peers = {peer.instance: peer.node_id for peer in self.membership.peers()}
        refusing_us = {
            peer.instance: peer.node_id for peer in self.membership.peers() if self.instance in peer.refusing
        }
        if not self.linked:
            return self._outcome_without_bus(peers, started, "not connected to the cluster bus (Redis)")
        if not peers and started - self.started_at > self.silence_s:
            return QueryOutcome(replies=[], expected=0, missing=[], took_ms=self._ms_since(started))
        request_id = uuid.uuid4().hex
        conflicting = {conflict.instance: conflict.node_id for conflict in self.conflicts.active(started)}
        pending = _Pending(
            expected={instance: node for instance, node in peers.items() if instance not in refusing_us},
            done=asyncio.Event(),
            presumed_down=self.membership.down(),
            conflicting=conflicting,
            refusing_us=refusing_us,
            observers=self.observers(),
        )
        self._pending[request_id] = pending
        try:
            async with asyncio.timeout(timeout_s):
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
            expected=max(len(peers), pending.subscribers - pending.observers),
            missing=pending.missing(),
            took_ms=self._ms_since(started),
        )

    async def request_one(self, peer: Peer, kind: Kind, body: dict[str, Any], timeout_s: float) -> QueryOutcome:
        """Ask one member only, on its own channel: the others never hear of it.

        PUBLISH there counts only that member's subscription; none means it cannot answer.
        """
        started = self.clock()
        expected = {peer.instance: peer.node_id}
        if not self.linked:
            return self._outcome_without_bus(expected, started, "not connected to the cluster bus (Redis)")
        request_id = uuid.uuid4().hex
        pending = _Pending(expected=expected, done=asyncio.Event())
        self._pending[request_id] = pending
        try:
            async with asyncio.timeout(timeout_s):
                receivers = await self._publish(f"{self.channel}:{peer.instance}", kind, body, request_id)
                pending.subscribers = int(receivers)
                pending.settle()
                if pending.subscribers > 0:
                    await pending.done.wait()
        except TimeoutError:
            self.metrics.timeouts += 1
        except OSError as exc:
            self.metrics.bus_errors += 1
            return self._outcome_without_bus(expected, started, f"Redis unavailable: {exc}")
        finally:
            del self._pending[request_id]
        return QueryOutcome(
            replies=list(pending.replies.values()),
            expected=1,
            missing=pending.missing(),
            took_ms=self._ms_since(started),
        )

    def observers(self) -> int:
        """How many subscribers announced that they only listen, within the silence."""
        now = self.clock()
        for instance in [i for i, at in self._observers.items() if now - at > self.silence_s]:
            del self._observers[instance]
        return len(self._observers)

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

    def _receive(self, raw: bytes) -> None:
        try:
            message = decode(raw, self.settings.bus_max_message_bytes)
        except BusError as exc:
            self.metrics.dropped(str(exc).split(" (")[0])
            log.warning("dropped a bus message: %s", exc)
            return
        now = self.clock()
        if message.instance == self.instance:
            self._heard_self_at = now
            self._unheard_since = None
            return
        if message.kind == "observer":
            if len(self._observers) >= MAX_OBSERVERS:
                self._observers.pop(next(iter(self._observers)))
            self._observers[message.instance] = now
            return
        if message.kind == "goodbye":
            self._observers.pop(message.instance, None)
            self.conflicts.forget(message.instance)
            self.membership.gone(message.instance, "goodbye")
            return
        if self._refused(message, now):
            return
        if message.kind in ("hello", "heartbeat"):
            body = message.body
            refusing = frozenset(body.get("refusing", ()))
            is_new = self.membership.seen(
                message.origin, message.instance, now, body.get("sockets"), body.get("pid"), refusing
            )
            if self.parts is not None:
                self.parts.presence(message.origin, message.instance, body.get("seq"), now)
            if message.kind == "hello" or is_new:
                # Let a newcomer know about this node now rather than at its next heartbeat.
                self._in_background(self._publish(self.channel, "heartbeat", self._presence_body()))
        elif message.instance in self.membership:
            # Only presence messages make a member; anything else is merely a sign of life.
            self.membership.seen(message.origin, message.instance, now)
            if message.kind == "part-delta" and self.parts is not None:
                self.parts.delta(message, now)
        if message.kind in REQUEST_KINDS:
            self._answer(message)
        elif message.kind in REPLY_KINDS:
            self._collect(message)

    def _refused(self, message: BusMessage, now: float) -> bool:
        """Whether `message` comes from a process that announces an id another live instance holds."""
        holder = self.instance if message.origin == self.node_id else self.membership.holder(message.origin)
        if holder is None or holder == message.instance:
            return False
        self.conflicts.refuse(message.origin, message.instance, holder, now)
        pending = self._pending.get(message.request_id or "") if message.kind in REPLY_KINDS else None
        if pending is not None:
            pending.refused[message.instance] = message.origin
            pending.settle()
        return True

    def _answer(self, message: BusMessage) -> None:
        handler = self.handlers.get(message.kind)
        if handler is None:
            self.metrics.dropped("no handler")
            return
        body = handler(message)
        reply_channel = f"{self.channel}:{message.instance}"
        self._in_background(self._publish(reply_channel, REPLY_KIND[message.kind], body, message.request_id))

    def _collect(self, message: BusMessage) -> None:
        pending = self._pending.get(message.request_id or "")
        if pending is None:
            self.metrics.dropped("reply to unknown request")
            return
        pending.replies[message.instance] = PeerReply(message.origin, message.instance, message.body)
        pending.settle()

    def _peer_gone(self, peer: Peer, reason: str) -> None:
        log.info("node %s (%s) left the cluster: %s", peer.node_id, peer.instance, reason)
        if self.parts is not None:
            self.parts.gone(peer.instance)
        for pending in self._pending.values():
            if pending.expected.pop(peer.instance, None) is not None and peer.instance not in pending.replies:
                pending.gone[peer.instance] = peer.node_id
                pending.subscribers = max(pending.subscribers - 1, 0)
                pending.settle()

    # Sending -----------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            receivers: int | None = None
            try:
                receivers = await self._publish(self.channel, "heartbeat", self._presence_body())
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
            if receivers is not None:
                # A refused duplicate counts as unaccounted: an asked query names it, an answer from memory could not.
                self.unaccounted = max(receivers - 1 - len(self.membership) - self.observers(), 0)
                self.counted_at = now
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    def _presence_body(self) -> dict[str, Any]:
        # The pid and the machine name: what another supervisor names when this node's id is taken. Whom it
        # refuses: a node refused by this one knows not to wait for its answers.
        refusing = [conflict.instance for conflict in self.conflicts.active(self.clock())][:MAX_REFUSING]
        body = {"sockets": self.presence(), "pid": os.getpid(), "host": self._hostname, "refusing": refusing}
        if self.part_seq is not None:
            body["seq"] = self.part_seq()
        return body

    async def publish_event(self, kind: Kind, body: dict[str, Any]) -> int:
        """Publish a message every node hears that is neither presence nor a request (a part-delta)."""
        return await self._publish(self.channel, kind, body)

    async def _publish(self, channel: str, kind: Kind, body: dict[str, Any], request_id: str | None = None) -> int:
        message = BusMessage(kind=kind, origin=self.node_id, instance=self.instance, body=body, request_id=request_id)
        return await self.publisher.publish(channel, encode(message))

    def _in_background(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._quietly(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, coroutine: Awaitable[Any]) -> None:
        try:
            await coroutine
        except OSError as exc:
            self.metrics.bus_errors += 1
            log.warning("bus publish failed: %s", exc)
