"""`/healthz`, `/metrics` and `/cluster`: what a node says about itself and the cluster it sees."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sioplay.node.routes.responses import json_response

if TYPE_CHECKING:
    from sioplay.node.app import Node

__all__ = ["ops_routes"]

REDIS_PING_TIMEOUT_S = 1.0


def id_conflicts(node: Node) -> list[dict[str, str]]:
    """The processes refused for announcing an id that another live instance holds (see node/id_conflicts.py)."""
    return [
        {"node": conflict.node_id, "instance": conflict.instance, "holder": conflict.holder}
        for conflict in node.bus.conflicts.active(node.bus.clock())
    ]


def ops_routes(node: Node) -> list[web.RouteDef]:
    async def health(request: web.Request) -> web.Response:
        redis_state: dict[str, Any]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REDIS_PING_TIMEOUT_S):
                await node.publisher.ping()
            redis_state = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
        except (OSError, TimeoutError) as exc:
            redis_state = {"ok": False, "error": str(exc) or type(exc).__name__}
        return json_response(
            {
                "node": node.node_id,
                "pid": os.getpid(),
                "cluster": node.settings.cluster,
                "uptime_s": round(time.monotonic() - node.started_at, 3),
                "sockets": len(node.sockets),
                "redis": redis_state,
                "bus": {
                    "linked": node.bus.linked,
                    "peers": len(node.bus.membership),
                    "failures": [f for f in (node.bus.failure, node.subscription.failure) if f is not None],
                    "id_conflicts": id_conflicts(node),
                },
                "patches": node.patches.as_json(),
                "metrics": node.metrics.as_json(),
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        text = node.metrics.prometheus(node.node_id, len(node.sockets), len(node.bus.membership))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def cluster(request: web.Request) -> web.Response:
        now = time.monotonic()
        nodes = [
            {
                "node": node.node_id,
                "instance": node.bus.instance,
                "self": True,
                "pid": os.getpid(),
                "sockets": len(node.sockets),
                "last_seen_s": 0.0,
            }
        ]
        nodes += [
            {
                "node": peer.node_id,
                "instance": peer.instance,
                "self": False,
                "pid": peer.pid,
                "sockets": peer.sockets,
                "last_seen_s": round(now - peer.last_seen, 3),
            }
            for peer in node.bus.live_nodes()
        ]
        return json_response(
            {
                "cluster": node.settings.cluster,
                "linked": node.bus.linked,
                "nodes": nodes,
                "id_conflicts": id_conflicts(node),
            }
        )

    return [
        web.get("/healthz", health),
        web.get("/metrics", metrics),
        web.get("/cluster", cluster),
    ]
