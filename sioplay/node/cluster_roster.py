"""The cluster-wide answers: who is in a room, and which rooms exist, merged from every node.

`LocalAnswers` is this node's side of the roster protocol (its parts, for the
other nodes' requests and for its own answers); `RosterService` asks the other
nodes once per query and merges. What the answers look like over HTTP is the
routes' (`routes/roster.py`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sioplay.node.bus import ClusterBus, PeerReply, QueryOutcome, RequestHandler
from sioplay.node.bus_message import BusMessage
from sioplay.node.metrics import Metrics
from sioplay.node.roster_parts import Entry, LocalPart, MergedRoster, RemotePart, RoomCaches, merge, sorted_entries
from sioplay.node.roster_protocol import rooms_reply, roster_reply, roster_request, unchanged_reply
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
        return {"roster-request": self.roster_part, "rooms-request": self.rooms_part}

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


class RosterService:
    """Answers for this node's clients: this node's part, and one request to all the others.

    Concurrent queries for one room share bus requests (`SingleFlight`): a query
    is answered from a request sent after it arrived, never from one already out.
    """

    def __init__(self, bus: ClusterBus, local: LocalAnswers, metrics: Metrics) -> None:
        self.bus = bus
        self.local = local
        self.metrics = metrics
        self.caches = local.caches
        self._flights: SingleFlight[tuple[str, float], RoomRoster] = SingleFlight(self._ask_roster)

    async def roster(self, room: str, timeout_s: float) -> RoomRoster:
        result = await self._flights.call((room, timeout_s), timeout_s)
        self._count(self.metrics, result.completeness, rooms=False)
        return result

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
        signature = (local.version, tuple(sorted((instance, part.version) for instance, part in parts.items())))
        merged = cache.merged
        if merged is None or merged.signature != signature:
            merged = cache.merged = MergedRoster(signature, merge(local.entries, parts.values()))
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
