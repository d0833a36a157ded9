"""How `cluster status` words a node's readiness and the embedded Redis's supervision: `online`,
`degraded (redis down 12 s)`, `failing (bus-heartbeat died: ...)`."""

from __future__ import annotations

from typing import Any

from sioplay.common.units import format_duration

__all__ = ["node_condition", "redis_condition"]


def node_condition(status: str, body: Any) -> str:
    """`status` from the state file, made precise by the node's own /healthz answer (None: no answer)."""
    if status != "online" or not isinstance(body, dict) or "ready" not in body:
        return status
    if body.get("alive") is False:
        failures = body.get("bus", {}).get("failures") or ["a task of its own died"]
        return f"failing ({'; '.join(map(str, failures))})"
    if body["ready"]:
        return "online"
    down = [
        f"{name} down {format_duration(dependency.get('for_s'))}"
        for name, dependency in (body.get("dependencies") or {}).items()
        if isinstance(dependency, dict) and not dependency.get("ok")
    ]
    return f"degraded ({', '.join(down)})" if down else "degraded"


def redis_condition(process: dict[str, Any] | None) -> str | None:
    """The embedded Redis's supervision in words; None when sioplay does not run it."""
    if not process:
        return None
    status, restarts = process.get("status"), process.get("restarts", 0)
    text = f"{status}, {restarts} restart{'s' if restarts != 1 else ''}"
    if status != "online" and process.get("reason"):
        text += f": {process['reason']}"
    return text
