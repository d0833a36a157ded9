"""The cluster-wide answers: who is in a room, and which rooms exist, merged from every node."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from sioplay.node.bus import ClusterBus, QueryOutcome
from sioplay.node.envelope import Envelope
from sioplay.node.metrics import Metrics
from sioplay.node.sockets import LocalSockets

__all__ = ["RoomRoster", "RoomsSummary", "RosterService"]


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    id_socket: str
    id_user: str
    node: str


def _user_order(id_user: str) -> tuple[int, int | str]:
    return (0, int(id_user)) if id_user.isdigit() else (1, id_user)


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
    def of(cls, node_id: str, outcome: QueryOutcome) -> Completeness:
        answered = sorted({node_id, *(reply.node_id for reply in outcome.replies)})
        return cls(answered, outcome.missing, outcome.expected + 1, outcome.took_ms, outcome.error)

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
    members: list[Member]
    completeness: Completeness

    def legacy_body(self) -> list[dict[str, str]]:
        """The original's response body: [{id_socket, id_user}]."""
        return [{"id_socket": m.id_socket, "id_user": m.id_user} for m in self.members]

    def envelope(self, group_by_user: bool = False) -> dict[str, Any]:
        users: list[dict[str, Any]]
        if group_by_user:
            grouped: dict[str, list[Member]] = defaultdict(list)
            for member in self.members:
                grouped[member.id_user].append(member)
            users = [
                {
                    "id_user": id_user,
                    "sockets": [{"id_socket": m.id_socket, "node": m.node} for m in sockets],
                }
                for id_user, sockets in grouped.items()
            ]
        else:
            users = [dataclasses.asdict(member) for member in self.members]
        return {
            "room": self.room,
            "users": users,
            "sockets": len(self.members),
            "unique_users": len({member.id_user for member in self.members}),
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
        bus.handlers["roster-request"] = self._roster_part
        bus.handlers["rooms-request"] = self._rooms_part
        bus.presence = lambda: len(sockets)

    def _roster_part(self, envelope: Envelope) -> dict[str, Any]:
        room = envelope.body["room"]
        return {"room": room, "members": [[s.id_socket, s.id_user] for s in self.sockets.in_room(room)]}

    def _rooms_part(self, envelope: Envelope) -> dict[str, Any]:
        return {"rooms": {room: [s.id_user for s in members] for room, members in self.sockets.rooms().items()}}

    async def roster(self, room: str, timeout_s: float) -> RoomRoster:
        outcome = await self.bus.request("roster-request", {"room": room}, timeout_s)
        node_id = self.bus.node_id
        members = [Member(s.id_socket, s.id_user, node_id) for s in self.sockets.in_room(room)]
        for reply in outcome.replies:
            if reply.body.get("room") == room:
                members += [Member(id_socket, id_user, reply.node_id) for id_socket, id_user in reply.body["members"]]
        unique = {member.id_socket: member for member in members}
        ordered = sorted(unique.values(), key=lambda m: (_user_order(m.id_user), m.id_socket))
        completeness = Completeness.of(node_id, outcome)
        self._count(self.metrics, completeness, rooms=False)
        return RoomRoster(room, ordered, completeness)

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
