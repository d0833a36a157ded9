"""`/healthz`, `/metrics` and `/cluster`: what a node says about itself and the cluster it sees."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sioplay.node.routes.responses import json_response

if TYPE_CHECKING:
    from sioplay.node.app import Node

__all__ = ["ops_routes"]


def id_conflicts(node: Node) -> list[dict[str, str]]:
    """The processes refused for announcing an id that another live instance holds (see node/id_conflicts.py)."""
    return [
        {"node": conflict.node_id, "instance": conflict.instance, "holder": conflict.holder}
        for conflict in node.bus.conflicts.active(node.bus.clock())
    ]


def roster_json(node: Node) -> dict[str, Any]:
    """The roster mode, and in the `replica` mode what this node holds of every other node's part."""
    replicas = node.roster.replicas
    if replicas is None:
        return {"mode": node.roster.mode}
    return {
        "mode": node.roster.mode,
        "replicas": replicas.as_json(),
        "replica_fetches": replicas.fetches,
        "replica_gaps": replicas.gaps,
    }


def ops_routes(node: Node) -> list[web.RouteDef]:
    async def health(request: web.Request) -> web.Response:
        """200 while the node is alive, ready or not (`ready`, `dependencies`); 503 once a task of its own died."""
        readiness = node.readiness
        await readiness.check()
        dependencies = readiness.as_json()
        redis = dependencies["redis"]
        return json_response(
            {
                "node": node.node_id,
                "pid": os.getpid(),
                "cluster": node.settings.cluster,
                # What a client must bring (common/cluster_auth.py reads it): never the key itself.
                "auth": {
                    "mode": node.settings.auth,
                    "algorithm": node.verifier.algorithm if node.verifier is not None else None,
                },
                "uptime_s": round(time.monotonic() - node.started_at, 3),
                "alive": readiness.alive,
                "ready": readiness.ready,
                "refusing_connections": readiness.refusal(),
                "dependencies": dependencies,
                "sockets": len(node.sockets),
                "redis": {key: redis[key] for key in ("ok", "error", "latency_ms") if key in redis},
                "bus": {
                    "linked": node.bus.linked,
                    "peers": len(node.bus.membership),
                    "failures": readiness.failures,
                    "id_conflicts": id_conflicts(node),
                },
                "roster": roster_json(node),
                "patches": node.patches.as_json(),
                "metrics": node.metrics.as_json(),
            },
            status=200 if readiness.alive else 503,
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
                # Processes that listen to the bus and never answer (another supervisor's start-up check).
                "observers": node.bus.observers(),
            }
        )

    return [
        web.get("/healthz", health),
        web.get("/metrics", metrics),
        web.get("/cluster", cluster),
    ]
