"""The `replica` roster mode: every other node's part, kept from its deltas, so that a query asks nobody.

Each node publishes a part-delta at every join and leave (`part_feed`), numbered
by its part's version (`seq`, one more at each change), and says that version in
every heartbeat. Here each other node's part is kept per room, with the last
`seq` applied. A replica is *current* only while

- it holds the node's whole part (fetched with a part-request, or empty from a
  node that never changed),
- no number was skipped, and the node's heartbeats announce no later version
  (a delta lost on the way shows within one heartbeat),
- the node was heard within `max_silence_s`, and this node's subscription has
  not been re-established since the part was fetched (a Redis restart loses
  whatever was published meanwhile: every replica is fetched again).

A replica that is not current is fetched again in the background, and until
then `part()` says so (None): the query asks the nodes as the `ask` mode does,
and never serves a part it cannot vouch for as complete. Plain logic over a
clock and a fetch function, so it is tested without processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sioplay.node.bus_message import BusMessage
from sioplay.node.roster_parts import RemotePart, sorted_entries

__all__ = ["PartFetch", "PeerReplica", "RoomReplica", "RosterReplicas"]

log = logging.getLogger(__name__)

# (node id, instance) -> the body of its part-reply, or None if it did not answer in time.
PartFetch = Callable[[str, str], Awaitable[dict[str, Any] | None]]

# Deltas kept while a fetch is out; past this the fetched part is already behind and is fetched again.
MAX_HELD_DELTAS = 10_000
EMPTY = RemotePart(0, [])


@dataclasses.dataclass(slots=True)
class RoomReplica:
    version: int
    members: dict[str, str]  # id_socket -> id_user
    # The members in roster order, made when first asked for at this version.
    part: RemotePart | None = None


@dataclasses.dataclass(slots=True)
class PeerReplica:
    node_id: str
    instance: str
    heard_at: float
    # The latest version of its part the node announced, and the version held here.
    announced: int = 0
    seq: int = 0
    known: bool = False
    rooms: dict[str, RoomReplica] = dataclasses.field(default_factory=dict)
    # Bumped whenever what is held stops counting; a fetch sent before brings a part of no use.
    epoch: int = 0
    fetching: bool = False
    held: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    overflowed: bool = False

    def current(self, now: float, max_silence_s: float) -> bool:
        return self.known and self.seq >= self.announced and now - self.heard_at <= max_silence_s

    def apply(self, delta: dict[str, Any]) -> None:
        name = delta["room"]
        id_socket, id_user = delta["socket"]
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = RoomReplica(0, {})
        if delta["joined"]:
            room.members[id_socket] = id_user
        else:
            room.members.pop(id_socket, None)
        if room.members:
            room.version = delta["seq"]
        else:
            del self.rooms[name]
        self.seq = delta["seq"]

    def forget_part(self) -> None:
        self.known = False
        self.epoch += 1
        self.held.clear()
        self.overflowed = False


class RosterReplicas:
    """The other nodes' parts (see the module docstring); the bus tells it what it hears (`PartListener`)."""

    def __init__(self, fetch: PartFetch, max_silence_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.max_silence_s = max_silence_s
        self.clock = clock
        self._peers: dict[str, PeerReplica] = {}
        # Instances that announce no part version: they publish no deltas (the `ask` mode), always asked.
        self._not_replicating: set[str] = set()
        self.relinked_at = clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.fetches = 0
        self.gaps = 0

    # What the bus hears -------------------------------------------------------------------

    def presence(self, node_id: str, instance: str, seq: int | None, now: float) -> None:
        if seq is None:
            self._not_replicating.add(instance)
            self._peers.pop(instance, None)
            return
        self._not_replicating.discard(instance)
        replica = self._peers.get(instance)
        if replica is None:
            replica = self._peers[instance] = PeerReplica(node_id, instance, heard_at=now)
            # A node that never changed has an empty part: nothing to fetch.
            replica.known = seq == 0
        replica.heard_at = max(replica.heard_at, now)
        replica.announced = max(replica.announced, seq)
        self._want(replica)

    def delta(self, message: BusMessage, now: float) -> None:
        body = message.body
        replica = self._peers.get(message.instance)
        if replica is None:
            if message.instance in self._not_replicating:
                return
            replica = self._peers[message.instance] = PeerReplica(message.origin, message.instance, heard_at=now)
        replica.heard_at = max(replica.heard_at, now)
        replica.announced = max(replica.announced, body["seq"])
        if not replica.known:
            if replica.fetching:
                if len(replica.held) < MAX_HELD_DELTAS:
                    replica.held.append(body)
                else:
                    replica.overflowed = True
            self._want(replica)
            return
        if body["seq"] <= replica.seq:
            return
        if body["seq"] == replica.seq + 1:
            replica.apply(body)
            return
        self.gaps += 1
        log.info("part delta %d of %s after %d: fetching its part", body["seq"], message.origin, replica.seq)
        replica.forget_part()
        self._want(replica)

    def gone(self, instance: str) -> None:
        replica = self._peers.pop(instance, None)
        if replica is not None:
            replica.forget_part()
        self._not_replicating.discard(instance)

    def relinked(self) -> None:
        self.relinked_at = self.clock()
        for replica in self._peers.values():
            replica.forget_part()
            self._want(replica)

    # Answers -----------------------------------------------------------------------------

    def part(self, instance: str, room: str) -> RemotePart | None:
        """`instance`'s part of `room` if its replica is current; None (and a fetch started) if not."""
        replica = self._peers.get(instance)
        if replica is None or not replica.current(self.clock(), self.max_silence_s):
            if replica is not None:
                self._want(replica)
            return None
        held = replica.rooms.get(room)
        if held is None:
            return EMPTY
        if held.part is None or held.part.version != held.version:
            held.part = RemotePart(held.version, sorted_entries(held.members.items(), replica.node_id))
        return held.part

    def as_json(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "node": replica.node_id,
                "instance": replica.instance,
                "seq": replica.seq,
                "announced": replica.announced,
                "current": replica.current(now, self.max_silence_s),
                "fetching": replica.fetching,
                "rooms": len(replica.rooms),
                "sockets": sum(len(room.members) for room in replica.rooms.values()),
            }
            for replica in sorted(self._peers.values(), key=lambda replica: replica.node_id)
        ]

    # Fetching ----------------------------------------------------------------------------

    def _want(self, replica: PeerReplica) -> None:
        """Fetch `replica`'s part unless it is held, at its announced version, or a fetch is out."""
        if replica.known and replica.seq < replica.announced:
            # Its heartbeats go out after every delta before them: the ones in between were lost.
            self.gaps += 1
            log.info(
                "missed part deltas of %s (have %d, it is at %d): fetching its part",
                replica.node_id,
                replica.seq,
                replica.announced,
            )
            replica.forget_part()
        if replica.known or replica.fetching:
            return
        replica.fetching = True
        task = asyncio.ensure_future(self._fetch(replica))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, replica: PeerReplica) -> None:
        epoch = replica.epoch
        self.fetches += 1
        try:
            body = await self.fetch(replica.node_id, replica.instance)
        except Exception:
            log.exception("fetching the part of %s failed", replica.node_id)
            body = None
        finally:
            replica.fetching = False
        if self._peers.get(replica.instance) is not replica:
            return
        if body is None or replica.epoch != epoch or replica.overflowed:
            # Asked again at its next heartbeat (or the next query that needs it), not in a tight loop.
            replica.forget_part()
            return
        self._install(replica, body)

    def _install(self, replica: PeerReplica, body: dict[str, Any]) -> None:
        replica.rooms = {
            name: RoomReplica(part["version"], dict(part["members"])) for name, part in body["rooms"].items()
        }
        replica.seq = body["seq"]
        replica.known = True
        held, replica.held = replica.held, []
        for delta in held:
            if delta["seq"] <= replica.seq:
                continue
            if delta["seq"] != replica.seq + 1:
                self.gaps += 1
                replica.forget_part()
                return
            replica.apply(delta)
        replica.announced = max(replica.announced, replica.seq)
