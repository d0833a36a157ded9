"""The cluster-wide answers: who is in a room, and which rooms exist, merged from every node."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sioplay.node.bus import ClusterBus, QueryOutcome, Reply
from sioplay.node.envelope import Envelope
from sioplay.node.metrics import Metrics
from sioplay.node.roster_parts import (
    Entry,
    LocalPart,
    MergedRoster,
    RemotePart,
    RoomCaches,
    legacy_json,
    merge,
    sorted_entries,
)
from sioplay.node.sockets import LocalSockets

__all__ = ["RoomRoster", "RoomsSummary", "RosterService"]


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
        answered = sorted({node_id, *(reply.node_id for reply in outcome.replies)} - set(unusable))
        missing = sorted({*outcome.missing, *unusable})
        return cls(answered, missing, outcome.expected + 1, outcome.took_ms, outcome.error)

    def as_json(self) -> dict[str, Any]:
        nodes: dict[str, Any] = {"expected": self.expected, "answered": self.answered, "missing": self.missing}
        if self.error:
            nodes["error"] = self.error
        return nodes

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Sioplay-Complete": "true" if self.complete else "false",
            "X-Sioplay-Nodes-Expected": str(self.expected),
            "X-Sioplay-Nodes-Answered": str(len(self.answered)),
            "X-Sioplay-Nodes-Missing": ",".join(self.missing),
            "X-Sioplay-Took-Ms": f"{self.took_ms:.3f}",
        }
        if self.error:
            headers["X-Sioplay-Error"] = self.error.encode("ascii", "replace").decode()[:200]
        return headers


@dataclasses.dataclass(frozen=True, slots=True)
class RoomRoster:
    room: str
    entries: Sequence[Entry]
    completeness: Completeness
    # The original's body, [{id_socket, id_user}], serialized once per state of the room.
    legacy_json: bytes

    def envelope(self, group_by_user: bool = False) -> dict[str, Any]:
        users: list[dict[str, Any]]
        if group_by_user:
            grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
            for _, id_socket, id_user, node in self.entries:
                grouped[id_user].append({"id_socket": id_socket, "node": node})
            users = [{"id_user": id_user, "sockets": sockets} for id_user, sockets in grouped.items()]
        else:
            users = [
                {"id_socket": id_socket, "id_user": id_user, "node": node}
                for _, id_socket, id_user, node in self.entries
            ]
        return {
            "room": self.room,
            "users": users,
            "sockets": len(self.entries),
            "unique_users": len({id_user for _, _, id_user, _ in self.entries}),
            "complete": self.completeness.complete,
            "nodes": self.completeness.as_json(),
            "took_ms": self.completeness.took_ms,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RoomsSummary:
    rooms: dict[str, list[str]]
    completeness: Completeness

    def envelope(self) -> dict[str, Any]:
        return {
            "rooms": [
                {"room": room, "sockets": len(users), "unique_users": len(set(users))}
                for room, users in sorted(self.rooms.items())
            ],
            "complete": self.completeness.complete,
            "nodes": self.completeness.as_json(),
            "took_ms": self.completeness.took_ms,
        }


class RosterService:
    """Answers for this node's clients, and this node's part of the answers for the others."""

    def __init__(self, bus: ClusterBus, sockets: LocalSockets, metrics: Metrics) -> None:
        self.bus = bus
        self.sockets = sockets
        self.metrics = metrics
        self.caches = RoomCaches()
        bus.handlers["roster-request"] = self._roster_part
        bus.handlers["rooms-request"] = self._rooms_part
        bus.presence = lambda: len(sockets)

    def _local_part(self, room: str) -> LocalPart:
        def members() -> list[tuple[str, str]]:
            return [(entry.id_socket, entry.id_user) for entry in self.sockets.in_room(room)]

        return self.caches[room].local_part(self.sockets.version(room), members, self.bus.node_id)

    def _roster_part(self, envelope: Envelope) -> dict[str, Any]:
        room = envelope.body["room"]
        version = self.sockets.version(room)
        if envelope.body.get("have", {}).get(self.bus.instance) == version:
            return {"room": room, "version": version, "unchanged": True}
        return {"room": room, "version": version, "members": self._local_part(room).members_json}

    def _rooms_part(self, envelope: Envelope) -> dict[str, Any]:
        return {"rooms": {room: [s.id_user for s in members] for room, members in self.sockets.rooms().items()}}

    async def roster(self, room: str, timeout_s: float) -> RoomRoster:
        cache = self.caches[room]
        # What `have` promises is resolved against these parts, whatever other queries keep meanwhile.
        held = dict(cache.remote)
        have = {instance: part.version for instance, part in held.items()}
        outcome = await self.bus.request("roster-request", {"room": room, "have": have}, timeout_s)
        local = self._local_part(room)
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
            entries = merge(local.entries, parts.values())
            merged = cache.merged = MergedRoster(signature, entries, legacy_json(entries))
        completeness = Completeness.of(self.bus.node_id, outcome, unresolved)
        self._count(self.metrics, completeness, rooms=False)
        return RoomRoster(room, merged.entries, completeness, merged.legacy_json)

    @staticmethod
    def _remote_part(reply: Reply, room: str, held: RemotePart | None) -> RemotePart | None:
        """The part a reply stands for; None if it names a version this query does not hold."""
        body = reply.body
        if body.get("room") != room:
            return None
        if body.get("unchanged") is True:
            return held if held is not None and held.version == body["version"] else None
        return RemotePart(body["version"], sorted_entries(body["members"], reply.node_id))

    async def rooms(self, timeout_s: float) -> RoomsSummary:
        outcome = await self.bus.request("rooms-request", {}, timeout_s)
        merged: dict[str, list[str]] = defaultdict(list)
        for room, members in self.sockets.rooms().items():
            merged[room] += [s.id_user for s in members]
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
