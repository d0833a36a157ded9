"""This node's table of connected sockets: who each one is and which room it is in."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

__all__ = ["LocalSocket", "LocalSockets"]


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSocket:
    id_socket: str
    id_user: str
    room: str

    def as_member(self) -> dict[str, str]:
        return {"id_socket": self.id_socket, "id_user": self.id_user}


class LocalSockets:
    """Fully connected sockets of this node, indexed by id and by room.

    This is the `socket.id_user` of the original: the node's own socket table,
    not a presence store. A socket is added only once its CONNECT went out.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, LocalSocket] = {}
        self._by_room: dict[str, dict[str, LocalSocket]] = defaultdict(dict)

    def add(self, entry: LocalSocket) -> None:
        self._by_id[entry.id_socket] = entry
        self._by_room[entry.room][entry.id_socket] = entry

    def remove(self, id_socket: str) -> LocalSocket | None:
        entry = self._by_id.pop(id_socket, None)
        if entry is not None:
            members = self._by_room.get(entry.room)
            if members is not None:
                members.pop(id_socket, None)
                if not members:
                    del self._by_room[entry.room]
        return entry

    def get(self, id_socket: str) -> LocalSocket | None:
        return self._by_id.get(id_socket)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def in_room(self, room: str) -> list[LocalSocket]:
        return list(self._by_room.get(room, {}).values())

    def rooms(self) -> dict[str, list[LocalSocket]]:
        return {room: list(members.values()) for room, members in self._by_room.items()}

    def __len__(self) -> int:
        return len(self._by_id)
