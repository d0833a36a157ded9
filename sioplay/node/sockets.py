"""This node's table of connected sockets: who each one is and which room it is in."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Callable

__all__ = ["ChangeListener", "LocalSocket", "LocalSockets"]


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSocket:
    id_socket: str
    id_user: str
    room: str

    def as_member(self) -> dict[str, str]:
        return {"id_socket": self.id_socket, "id_user": self.id_user}


# (change number, the socket, True if it joined): called as each change is made, in order.
ChangeListener = Callable[[int, "LocalSocket", bool], None]


class LocalSockets:
    """Fully connected sockets of this node, indexed by id and by room.

    This is the `socket.id_user` of the original: the node's own socket table,
    not a presence store. A socket is added only once its CONNECT went out.

    Each room has a version that changes whenever a socket joins or leaves it,
    so that what was computed from a room's members can be kept until then.
    Versions come from one counter, so a version never names two different
    member lists; an empty room is version 0. The counter itself (`changes`)
    is the version of the node's whole part, which `on_change` listeners are
    told of at each change (the deltas of the `replica` roster mode).
    """

    def __init__(self, on_change: ChangeListener | None = None) -> None:
        self.on_change = on_change
        self._by_id: dict[str, LocalSocket] = {}
        self._by_room: dict[str, dict[str, LocalSocket]] = defaultdict(dict)
        self._versions: dict[str, int] = {}
        self._changes = 0
        self._emptied = asyncio.Event()
        self._emptied.set()

    def _changed(self, entry: LocalSocket, joined: bool) -> None:
        self._changes += 1
        if entry.room in self._by_room:
            self._versions[entry.room] = self._changes
        else:
            self._versions.pop(entry.room, None)
        if self.on_change is not None:
            self.on_change(self._changes, entry, joined)

    @property
    def changes(self) -> int:
        """How many joins and leaves this node has seen: the version of its whole part."""
        return self._changes

    def add(self, entry: LocalSocket) -> None:
        self._emptied.clear()
        self._by_id[entry.id_socket] = entry
        self._by_room[entry.room][entry.id_socket] = entry
        self._changed(entry, joined=True)

    def remove(self, id_socket: str) -> LocalSocket | None:
        entry = self._by_id.pop(id_socket, None)
        if entry is not None:
            members = self._by_room.get(entry.room)
            if members is not None:
                members.pop(id_socket, None)
                if not members:
                    del self._by_room[entry.room]
            self._changed(entry, joined=False)
            if not self._by_id:
                self._emptied.set()
        return entry

    async def wait_empty(self) -> None:
        """Return once no socket is left (a stopping node waits for its disconnect handlers)."""
        await self._emptied.wait()

    def get(self, id_socket: str) -> LocalSocket | None:
        return self._by_id.get(id_socket)

    def version(self, room: str) -> int:
        return self._versions.get(room, 0)

    def in_room(self, room: str) -> list[LocalSocket]:
        return list(self._by_room.get(room, {}).values())

    def rooms(self) -> dict[str, list[LocalSocket]]:
        return {room: list(members.values()) for room, members in self._by_room.items()}

    def __len__(self) -> int:
        return len(self._by_id)
