"""Each node's part of a room's roster, kept sorted and serialized until a socket joins or leaves.

A roster query for a room of M sockets would otherwise build, sort and
serialize M entries on every node for every query; the profile of the first
version spent nine tenths of a query there. Here a node's part of a room is
computed once per version of the room (see `LocalSockets.version`): its entries
in roster order, and the serialized members it sends to the other nodes. The
requesting node keeps the other nodes' parts the same way, by (instance,
version), and the merged answer with its JSON until one of the parts changes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import orjson

from sioplay.db.models import id_user_order

__all__ = [
    "Entry",
    "LocalPart",
    "MergedRoster",
    "RemotePart",
    "RoomCache",
    "RoomCaches",
    "merge",
    "order_key",
    "sorted_entries",
]

# (order key, id_socket, id_user, node): tuples compare in C, on the unique order key.
Entry = tuple[str, str, str, str]

MAX_CACHED_ROOMS = 1024


def order_key(id_user: str, id_socket: str) -> str:
    """A string whose plain order is the roster's: users as `id_user_order` lists them, then by socket."""
    return f"{id_user_order(id_user)}\x00{id_socket}"


def sorted_entries(members: Iterable[tuple[str, str]], node: str) -> list[Entry]:
    return sorted((order_key(id_user, id_socket), id_socket, id_user, node) for id_socket, id_user in members)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalPart:
    version: int
    entries: list[Entry]
    # [[id_socket, id_user], …] in roster order, as other nodes receive it.
    members_json: orjson.Fragment


@dataclasses.dataclass(frozen=True, slots=True)
class RemotePart:
    version: int
    entries: list[Entry]


@dataclasses.dataclass(frozen=True, slots=True)
class MergedRoster:
    # Local version, then (instance, version) of every part that answered.
    signature: tuple[int, tuple[tuple[str, int], ...]]
    entries: Sequence[Entry]
    # Serialized forms of `entries` (the HTTP bodies), made by whoever needs one, kept with it.
    serialized: dict[str, bytes] = dataclasses.field(default_factory=dict)


def merge(local: list[Entry], remote: Iterable[RemotePart]) -> list[Entry]:
    runs = [local, *(part.entries for part in remote)]
    if len(runs) == 1:
        return local
    # Timsort merges the already sorted runs in about M log(runs) comparisons.
    return sorted(itertools.chain.from_iterable(runs))


@dataclasses.dataclass(slots=True)
class RoomCache:
    local: LocalPart | None = None
    remote: dict[str, RemotePart] = dataclasses.field(default_factory=dict)
    merged: MergedRoster | None = None

    def local_part(self, version: int, members: Callable[[], Iterable[tuple[str, str]]], node: str) -> LocalPart:
        """This node's part at `version`; `members` is only called when that version is not the one held."""
        if self.local is None or self.local.version != version:
            entries = sorted_entries(members(), node)
            members_json = orjson.Fragment(orjson.dumps([[id_socket, id_user] for _, id_socket, id_user, _ in entries]))
            self.local = LocalPart(version, entries, members_json)
        return self.local

    def keep_remote(self, instance: str, part: RemotePart) -> None:
        held = self.remote.get(instance)
        # Versions only grow: a slower reply must not replace a newer part.
        if held is None or held.version < part.version:
            self.remote[instance] = part

    def forget_except(self, instances: set[str]) -> None:
        for instance in [instance for instance in self.remote if instance not in instances]:
            del self.remote[instance]


class RoomCaches:
    """The cached parts of the most recently asked rooms; the least recently asked go first."""

    def __init__(self, limit: int = MAX_CACHED_ROOMS) -> None:
        self.limit = limit
        self._rooms: OrderedDict[str, RoomCache] = OrderedDict()

    def __getitem__(self, room: str) -> RoomCache:
        cache = self._rooms.get(room)
        if cache is None:
            cache = self._rooms[room] = RoomCache()
            if len(self._rooms) > self.limit:
                self._rooms.popitem(last=False)
        else:
            self._rooms.move_to_end(room)
        return cache

    def __len__(self) -> int:
        return len(self._rooms)
