"""Which other nodes are alive, from what they say on the bus: nothing is stored in Redis.

A peer is alive from its first message until it says goodbye or has been
silent for `silence_s`. One declared silent is remembered as *down* until it is
heard again: Redis may still count its subscription (a frozen process keeps its
connection), and a query must not wait for it. Plain logic over a clock, so it
is tested without processes.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Membership", "Peer"]

# Peers remembered as down; past this the oldest are forgotten (they are waited for again, as unannounced).
MAX_DOWN = 64


@dataclasses.dataclass(slots=True)
class Peer:
    node_id: str
    instance: str
    last_seen: float
    sockets: int = 0
    pid: int | None = None  # as the peer announced it; on another host it names a process there
    # The instances this peer refuses for an id another instance holds: it will not answer them.
    refusing: frozenset[str] = frozenset()


class Membership:
    def __init__(self, silence_s: float, on_gone: Callable[[Peer, str], None] | None = None) -> None:
        self.silence_s = silence_s
        self.on_gone = on_gone
        self._peers: dict[str, Peer] = {}
        self._down: OrderedDict[str, str] = OrderedDict()

    def seen(
        self,
        node_id: str,
        instance: str,
        now: float,
        sockets: int | None = None,
        pid: int | None = None,
        refusing: frozenset[str] | None = None,
    ) -> bool:
        """Record a sign of life (with what a heartbeat says: sockets, pid, whom it refuses); True when new."""
        self._down.pop(instance, None)
        peer = self._peers.get(instance)
        is_new = peer is None
        if peer is None:
            peer = self._peers[instance] = Peer(node_id, instance, last_seen=now)
        peer.last_seen = max(peer.last_seen, now)
        if sockets is not None:
            peer.sockets = sockets
        if pid is not None:
            peer.pid = pid
        if refusing is not None:
            peer.refusing = refusing
        return is_new

    def gone(self, instance: str, reason: str) -> Peer | None:
        peer = self._peers.pop(instance, None)
        if peer is not None and reason == "silent":
            self._down[instance] = peer.node_id
            if len(self._down) > MAX_DOWN:
                self._down.popitem(last=False)
        if peer is not None and self.on_gone is not None:
            self.on_gone(peer, reason)
        return peer

    def down(self) -> dict[str, str]:
        """instance -> node id of the peers declared silent and not heard since, the most recent last."""
        return dict(self._down)

    def expire(self, now: float) -> list[Peer]:
        """Drop the peers silent for longer than `silence_s`."""
        silent = [p.instance for p in self._peers.values() if now - p.last_seen > self.silence_s]
        return [peer for instance in silent if (peer := self.gone(instance, "silent")) is not None]

    def touch_all(self, now: float) -> None:
        """Forgive the silence of every peer: our own link was down, not theirs."""
        for peer in self._peers.values():
            peer.last_seen = now

    def holder(self, node_id: str) -> str | None:
        """The instance of the live peer that goes by `node_id`, if any."""
        return next((peer.instance for peer in self._peers.values() if peer.node_id == node_id), None)

    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda peer: (peer.node_id, peer.instance))

    def __contains__(self, instance: object) -> bool:
        return instance in self._peers

    def __len__(self) -> int:
        return len(self._peers)
