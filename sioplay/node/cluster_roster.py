"""The cluster-wide answers: who is in a room, and which rooms exist, merged from every node.

`LocalAnswers` is this node's side of the roster protocol (its parts, for the
other nodes' requests and for its own answers); `RosterService` asks the other
nodes once per query and merges (the `ask` mode), or, in the `replica` mode,
merges the parts it keeps of them (`roster_replicas`) while every one is
current, and asks as `ask` does when one is not. What the answers look like
over HTTP is the routes' (`routes/roster.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sioplay.node.bus import ClusterBus, PeerReply, QueryOutcome, RequestHandler
from sioplay.node.bus_message import BusMessage
from sioplay.node.membership import Peer
from sioplay.node.metrics import Metrics
from sioplay.node.roster_parts import Entry, LocalPart, MergedRoster, RemotePart, RoomCaches, merge, sorted_entries
from sioplay.node.roster_protocol import part_reply, rooms_reply, roster_reply, roster_request, unchanged_reply
from sioplay.node.roster_replicas import RosterReplicas
from sioplay.node.single_flight import SingleFlight
from sioplay.node.sockets import LocalSockets

__all__ = ["Completeness", "LocalAnswers", "RoomRoster", "RoomsSummary", "RosterService"]


@dataclasses.dataclass(frozen=True, slots=True)
class Completeness:
    answered: list[str]
    missing: list[str]
    expected: int
    took_ms: float
    error: str | None

    @property
    def complete(self) -> bool:
        return not self.missing and self.error is None

    @classmethod
    def of(cls, node_id: str, outcome: QueryOutcome, unusable: Sequence[str] = ()) -> Completeness:
        """`unusable`: nodes that answered with nothing this query could use; they count as missing."""
        # A list, not a set: each instance that answered counts, even if two were to share an id.
        answered = sorted([node_id, *(reply.node_id for reply in outcome.replies if reply.node_id not in unusable)])
        missing = sorted({*outcome.missing, *unusable})
        # Every node named, answered or missing, is expected: never "3 of 3 answered; no answer from node-4".
        expected = max(outcome.expected + 1, len(answered) + len(missing))
        return cls(answered, missing, expected, outcome.took_ms, outcome.error)


@dataclasses.dataclass(frozen=True, slots=True)
class RoomRoster:
    room: str
    entries: Sequence[Entry]
    completeness: Completeness
    # Serialized forms of `entries`, by name, kept as long as the merged roster they came from.
    serialized: dict[str, bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class RoomsSummary:
    rooms: dict[str, list[str]]
    completeness: Completeness


class LocalAnswers:
    """This node's part of every answer: for the other nodes' requests, and for its own answers."""

    def __init__(self, sockets: LocalSockets, caches: RoomCaches, node_id: str, instance: str) -> None:
        self.sockets = sockets
        self.caches = caches
        self.node_id = node_id
        self.instance = instance

    def handlers(self) -> dict[str, RequestHandler]:
        return {"roster-request": self.roster_part, "rooms-request": self.rooms_part, "part-request": self.whole_part}

    def local_part(self, room: str) -> LocalPart:
        def members() -> list[tuple[str, str]]:
            return [(entry.id_socket, entry.id_user) for entry in self.sockets.in_room(room)]

        return self.caches[room].local_part(self.sockets.version(room), members, self.node_id)

    def roster_part(self, message: BusMessage) -> dict[str, Any]:
        room = message.body["room"]
        version = self.sockets.version(room)
        if message.body.get("have", {}).get(self.instance) == version:
            return unchanged_reply(room, version)
        return roster_reply(room, version, self.local_part(room).members_json)

    def room_users(self) -> dict[str, list[str]]:
        """The id_user of every socket of this node, by room."""
        return {room: [entry.id_user for entry in members] for room, members in self.sockets.rooms().items()}

    def rooms_part(self, message: BusMessage) -> dict[str, Any]:
        return rooms_reply(self.room_users())

    def whole_part(self, message: BusMessage) -> dict[str, Any]:
        """Every room of this node at one version of its part, for a replica to start from."""
        rooms = {
            room: (self.sockets.version(room), [[entry.id_socket, entry.id_user] for entry in members])
            for room, members in self.sockets.rooms().items()
        }
        return part_reply(self.sockets.changes, rooms)


class RosterService:
    """Answers for this node's clients: this node's part, and one request to all the others.

    Concurrent queries for one room share bus requests (`SingleFlight`): a query
    is answered from a request sent after it arrived, never from one already out.
    In the `replica` mode the same holds for the barrier a query sends before
    answering from the replicas.
    """

    def __init__(self, bus: ClusterBus, local: LocalAnswers, metrics: Metrics, replica: bool = False) -> None:
        self.bus = bus
        self.local = local
        self.metrics = metrics
        self.caches = local.caches
        self.replicas: RosterReplicas | None = None
        if replica:
            max_silence_s = 2 * bus.settings.heartbeat_interval_s
            self.replicas = RosterReplicas(self._fetch_part, max_silence_s, clock=bus.clock)
            bus.parts = self.replicas
        run = self._ask_roster if self.replicas is None else self._replica_roster
        self._flights: SingleFlight[tuple[str, float], RoomRoster] = SingleFlight(run)

    @property
    def mode(self) -> str:
        return "ask" if self.replicas is None else "replica"

    async def roster(self, room: str, timeout_s: float) -> RoomRoster:
        result = await self._flights.call((room, timeout_s), timeout_s)
        self._count(self.metrics, result.completeness, rooms=False)
        return result

    async def _replica_roster(self, key: tuple[str, float], timeout_s: float) -> RoomRoster:
        """From the replicas once the barrier is back; the nodes whose replica is not current are asked."""
        room = key[0]
        started = self.bus.clock()
        try:
            async with asyncio.timeout(timeout_s):
                # Every delta Redis took before this query arrived is applied once the barrier returns.
                await self.bus.subscription.barrier()
        except (OSError, TimeoutError):
            return await self._ask_roster(key, self._remaining(started, timeout_s))
        split = self._replica_parts(room)
        if split is None:
            return await self._ask_roster(key, self._remaining(started, timeout_s))
        current, stale = split
        parts = {peer.instance: part for peer, part in current}
        answered = [self.bus.node_id, *(peer.node_id for peer, _ in current)]
        missing: list[str] = []
        if stale:
            asked = await self._ask_some(room, stale, self._remaining(started, timeout_s))
            for peer, part in asked:
                if part is None:
                    missing.append(peer.node_id)
                else:
                    parts[peer.instance] = part
                    answered.append(peer.node_id)
        else:
            self.metrics.roster_replica_answers += 1
        merged = self._merged(room, self.local.local_part(room), parts)
        took_ms = round((self.bus.clock() - started) * 1000, 3)
        completeness = Completeness(sorted(answered), sorted(missing), len(answered) + len(missing), took_ms, None)
        return RoomRoster(room, merged.entries, completeness, merged.serialized)

    def _replica_parts(self, room: str) -> tuple[list[tuple[Peer, RemotePart]], list[Peer]] | None:
        """The live nodes with their current part of `room`, and those whose replica is not current;
        None when the heartbeats cannot vouch for who is subscribed (then every node is asked)."""
        assert self.replicas is not None
        bus = self.bus
        if not bus.linked or bus.unaccounted > 0 or bus.counted_at is None:
            return None
        if bus.counted_at <= self.replicas.relinked_at:
            # Who is subscribed is known only from a heartbeat counted since the subscription came back.
            return None
        peers = bus.live_nodes()
        if any(bus.instance in peer.refusing for peer in peers):
            # A member that refuses this node (a duplicate id) answers nothing; an asked query names it.
            return None
        current: list[tuple[Peer, RemotePart]] = []
        stale: list[Peer] = []
        for peer in peers:
            # Each part not current is fetched in the background by `part()`, for the next queries.
            part = self.replicas.part(peer.instance, room)
            if part is None:
                stale.append(peer)
            else:
                current.append((peer, part))
        return current, stale

    async def _ask_some(self, room: str, peers: list[Peer], timeout_s: float) -> list[tuple[Peer, RemotePart | None]]:
        """Ask only `peers` for their part of `room`, each on its own channel; None for one that did not answer."""
        self.metrics.roster_bus_requests += 1
        cache = self.caches[room]
        held = dict(cache.remote)

        async def ask(peer: Peer) -> tuple[Peer, RemotePart | None]:
            mine = held.get(peer.instance)
            have = {} if mine is None else {peer.instance: mine.version}
            outcome = await self.bus.request_one(peer, "roster-request", roster_request(room, have), timeout_s)
            reply = next((reply for reply in outcome.replies if reply.instance == peer.instance), None)
            part = None if reply is None else self._remote_part(reply, room, mine)
            if part is not None:
                cache.keep_remote(peer.instance, part)
            return peer, part

        return list(await asyncio.gather(*(ask(peer) for peer in peers)))

    def _remaining(self, started: float, timeout_s: float) -> float:
        return max(timeout_s - (self.bus.clock() - started), 0.001)

    async def _fetch_part(self, node_id: str, instance: str) -> dict[str, Any] | None:
        self.metrics.roster_replica_fetches += 1
        peer = Peer(node_id, instance, last_seen=self.bus.clock())
        outcome = await self.bus.request_one(peer, "part-request", {}, self.bus.settings.roster_timeout_s)
        return next((reply.body for reply in outcome.replies if reply.instance == instance), None)

    def _merged(self, room: str, local: LocalPart, parts: dict[str, RemotePart]) -> MergedRoster:
        """The merged roster of these parts (by instance), kept until one of them changes."""
        cache = self.caches[room]
        signature = (local.version, tuple(sorted((instance, part.version) for instance, part in parts.items())))
        merged = cache.merged
        if merged is None or merged.signature != signature:
            merged = cache.merged = MergedRoster(signature, merge(local.entries, parts.values()))
        return merged

    async def _ask_roster(self, key: tuple[str, float], timeout_s: float) -> RoomRoster:
        room = key[0]
        self.metrics.roster_bus_requests += 1
        cache = self.caches[room]
        # What `have` promises is resolved against these parts, whatever other queries keep meanwhile.
        held = dict(cache.remote)
        have = {instance: part.version for instance, part in held.items()}
        outcome = await self.bus.request("roster-request", roster_request(room, have), timeout_s)
        local = self.local.local_part(room)
        parts: dict[str, RemotePart] = {}
        unresolved: list[str] = []
        for reply in outcome.replies:
            part = self._remote_part(reply, room, held.get(reply.instance))
            if part is None:
                unresolved.append(reply.node_id)
                continue
            parts[reply.instance] = part
            cache.keep_remote(reply.instance, part)
        cache.forget_except({peer.instance for peer in self.bus.live_nodes()})
        merged = self._merged(room, local, parts)
        completeness = Completeness.of(self.bus.node_id, outcome, unresolved)
        return RoomRoster(room, merged.entries, completeness, merged.serialized)

    @staticmethod
    def _remote_part(reply: PeerReply, room: str, held: RemotePart | None) -> RemotePart | None:
        """The part a reply stands for; None if it names a version this query does not hold."""
        body = reply.body
        if body.get("room") != room:
            return None
        if body.get("unchanged") is True:
            return held if held is not None and held.version == body["version"] else None
        return RemotePart(body["version"], sorted_entries(body["members"], reply.node_id))

    async def rooms(self, timeout_s: float) -> RoomsSummary:
        outcome = await self.bus.request("rooms-request", {}, timeout_s)
        merged: dict[str, list[str]] = defaultdict(list, self.local.room_users())
        for reply in outcome.replies:
            for room, users in reply.body["rooms"].items():
                merged[room] += users
        completeness = Completeness.of(self.bus.node_id, outcome)
        self._count(self.metrics, completeness, rooms=True)
        return RoomsSummary(dict(merged), completeness)

    @staticmethod
    def _count(metrics: Metrics, completeness: Completeness, rooms: bool) -> None:
        if rooms:
            metrics.rooms_queries += 1
        else:
            metrics.roster_queries += 1
        if not completeness.complete:
            metrics.partial_answers += 1
        metrics.last_query_ms = completeness.took_ms
