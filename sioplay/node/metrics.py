"""Counters a node keeps about its roster queries and its bus, for /healthz and /metrics."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

__all__ = ["Metrics"]


@dataclasses.dataclass(slots=True)
class Metrics:
    roster_queries: int = 0
    # Bus requests made for roster queries: fewer than the queries when concurrent ones shared one.
    roster_bus_requests: int = 0
    # The `replica` mode: queries answered from the replicas without asking, and whole parts fetched.
    roster_replica_answers: int = 0
    roster_replica_fetches: int = 0
    rooms_queries: int = 0
    partial_answers: int = 0
    timeouts: int = 0
    bus_errors: int = 0
    last_query_ms: float | None = None
    bus_dropped: Counter[str] = dataclasses.field(default_factory=Counter)
    # Messages whose handler raised, by channel: each was skipped, the subscription stayed.
    handler_errors: Counter[str] = dataclasses.field(default_factory=Counter)
    # What clients sent or failed to send that was refused, by reason (connections closed, events dropped).
    client_refused: Counter[str] = dataclasses.field(default_factory=Counter)
    # Room frames delivered, by path: "direct" (written at once) or "queued" (the socket's writer sends it).
    room_deliveries: Counter[str] = dataclasses.field(default_factory=Counter)

    def dropped(self, reason: str) -> None:
        self.bus_dropped[reason] += 1

    def handler_failed(self, channel: str, error: BaseException) -> None:
        self.handler_errors[channel] += 1

    def refused(self, reason: str) -> None:
        self.client_refused[reason] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "roster_queries": self.roster_queries,
            "roster_bus_requests": self.roster_bus_requests,
            "roster_replica_answers": self.roster_replica_answers,
            "roster_replica_fetches": self.roster_replica_fetches,
            "rooms_queries": self.rooms_queries,
            "partial_answers": self.partial_answers,
            "timeouts": self.timeouts,
            "bus_errors": self.bus_errors,
            "bus_dropped": sum(self.bus_dropped.values()),
            "bus_dropped_by_reason": dict(self.bus_dropped),
            "handler_errors": sum(self.handler_errors.values()),
            "handler_errors_by_channel": dict(self.handler_errors),
            "client_refused": sum(self.client_refused.values()),
            "client_refused_by_reason": dict(self.client_refused),
            "room_deliveries": dict(self.room_deliveries),
            "last_query_ms": self.last_query_ms,
        }

    def prometheus(self, node_id: str, sockets: int, peers: int) -> str:
        """The counters in Prometheus' text exposition format."""
        label = f'node="{node_id}"'
        lines = [
            "# TYPE sioplay_roster_queries_total counter",
            f"sioplay_roster_queries_total{{{label}}} {self.roster_queries}",
            "# TYPE sioplay_roster_bus_requests_total counter",
            f"sioplay_roster_bus_requests_total{{{label}}} {self.roster_bus_requests}",
            "# TYPE sioplay_roster_replica_answers_total counter",
            f"sioplay_roster_replica_answers_total{{{label}}} {self.roster_replica_answers}",
            "# TYPE sioplay_roster_replica_fetches_total counter",
            f"sioplay_roster_replica_fetches_total{{{label}}} {self.roster_replica_fetches}",
            "# TYPE sioplay_rooms_queries_total counter",
            f"sioplay_rooms_queries_total{{{label}}} {self.rooms_queries}",
            "# TYPE sioplay_partial_answers_total counter",
            f"sioplay_partial_answers_total{{{label}}} {self.partial_answers}",
            "# TYPE sioplay_query_timeouts_total counter",
            f"sioplay_query_timeouts_total{{{label}}} {self.timeouts}",
            "# TYPE sioplay_bus_errors_total counter",
            f"sioplay_bus_errors_total{{{label}}} {self.bus_errors}",
            "# TYPE sioplay_bus_dropped_total counter",
        ]
        lines += [
            f'sioplay_bus_dropped_total{{{label},reason="{reason}"}} {count}'
            for reason, count in sorted(self.bus_dropped.items())
        ]
        lines.append("# TYPE sioplay_handler_errors_total counter")
        lines += [
            f'sioplay_handler_errors_total{{{label},channel="{channel}"}} {count}'
            for channel, count in sorted(self.handler_errors.items())
        ]
        lines.append("# TYPE sioplay_client_refused_total counter")
        lines += [
            f'sioplay_client_refused_total{{{label},reason="{reason}"}} {count}'
            for reason, count in sorted(self.client_refused.items())
        ]
        lines.append("# TYPE sioplay_room_deliveries_total counter")
        lines += [
            f'sioplay_room_deliveries_total{{{label},path="{path}"}} {count}'
            for path, count in sorted(self.room_deliveries.items())
        ]
        lines += [
            "# TYPE sioplay_last_query_ms gauge",
            f"sioplay_last_query_ms{{{label}}} {self.last_query_ms if self.last_query_ms is not None else 'NaN'}",
            "# TYPE sioplay_sockets gauge",
            f"sioplay_sockets{{{label}}} {sockets}",
            "# TYPE sioplay_peers gauge",
            f"sioplay_peers{{{label}}} {peers}",
        ]
        return "\n".join(lines) + "\n"
