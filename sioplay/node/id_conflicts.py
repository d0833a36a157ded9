"""Node ids held by two live processes at once: refused on the bus, logged once, shown in /healthz.

A node id names one node instance in the whole cluster (``web1/node-1``). When a second
process announces an id that this node or a live peer already holds (two supervisors
with the same ``--name`` on one Redis), its messages are refused: it is not made a
member, not answered, and its replies count as missing. Both sides see the other as the
intruder, so both supervisors' ``status`` show the conflict. A conflict is forgotten once
the intruder is silent for the silence period or says goodbye. Neither side's queries wait
for the other: each node lists in its heartbeats the instances it refuses (``refusing``),
so a refused node knows which members will not answer it (see `bus`).
"""

from __future__ import annotations

import dataclasses
import logging

__all__ = ["IdConflict", "IdConflicts"]

log = logging.getLogger(__name__)

# Conflicting instances remembered at most; past this the oldest are forgotten (and logged again if heard).
MAX_CONFLICTS = 64


@dataclasses.dataclass(slots=True)
class IdConflict:
    node_id: str
    instance: str  # the refused process
    holder: str  # the instance that holds the id (this node's own, or a peer's)
    last_seen: float


class IdConflicts:
    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self._refused: dict[str, IdConflict] = {}

    def refuse(self, node_id: str, instance: str, holder: str, now: float) -> None:
        conflict = self._refused.get(instance)
        if conflict is None:
            log.error(
                "refused node %s (instance %s) on the bus: instance %s already holds that id; "
                "give each supervisor of the cluster its own --name",
                node_id,
                instance,
                holder,
            )
            if len(self._refused) >= MAX_CONFLICTS:
                self._refused.pop(next(iter(self._refused)))
            conflict = self._refused[instance] = IdConflict(node_id, instance, holder, now)
        conflict.last_seen = max(conflict.last_seen, now)

    def forget(self, instance: str) -> None:
        self._refused.pop(instance, None)

    def __contains__(self, instance: object) -> bool:
        return instance in self._refused

    def active(self, now: float) -> list[IdConflict]:
        """The conflicts heard within the silence period, by node id."""
        for instance in [i for i, c in self._refused.items() if now - c.last_seen > self.silence_s]:
            del self._refused[instance]
        return sorted(self._refused.values(), key=lambda conflict: (conflict.node_id, conflict.instance))
