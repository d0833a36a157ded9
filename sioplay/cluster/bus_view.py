"""The rest of the cluster as the bus sees it, for `cluster status`: other hosts' nodes and id conflicts.

This supervisor knows its own nodes in full (state file, psutil, /healthz); the nodes of
other supervisors are known only from their heartbeats, which one of our nodes relays
through its ``/cluster`` route: host, node, pid (on its own host), sockets, last heartbeat.
Before a start, with no node of ours to ask, `hear_nodes` listens to the heartbeats itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.request
from typing import Any, Literal

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from sioplay.common.cluster_secret import existing_secret, parse_secret
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import ClusterState
from sioplay.common.urls import local_url
from sioplay.errors import BusError, RedisError
from sioplay.settings import Settings

__all__ = ["OBSERVER_ORIGIN", "HeardNode", "collect_bus_view", "hear_nodes", "render_bus_view"]

# What `hear_nodes` calls itself on the bus: a node reads an observer's kind and instance, never its origin.
OBSERVER_ORIGIN = "start-check"


@dataclasses.dataclass(frozen=True, slots=True)
class HeardNode:
    node: str
    instance: str
    pid: int | None
    host: str | None  # the machine's hostname, as the node announced it


def hear_nodes(settings: Settings, duration_s: float) -> list[HeardNode]:
    """The nodes whose heartbeat (or hello) on this cluster's bus is heard within `duration_s`, by node id.

    Only messages signed with the cluster's secret count: a process that cannot sign is no member anyway.
    While it listens, it is an observer to the nodes: one more subscriber, which they know never answers.
    """
    # The node's message format, imported here: `cluster status` and `--help` do without it.
    from sioplay.node.bus import new_instance_id
    from sioplay.node.bus_message import BusMessage, decode, encode
    from sioplay.node.signing import MessageSigner

    assert settings.redis_url is not None
    # Never made here: a home without a secret yet has no node that signs with it to hear.
    if settings.cluster_secret:
        secret: bytes | None = parse_secret(settings.cluster_secret, "SIOPLAY_CLUSTER_SECRET")
    else:
        secret, _ = existing_secret(settings.home)
    if secret is None:
        return []
    endpoint = RedisEndpoint.from_url(settings.redis_url)
    channel = f"{settings.cluster}:bus"
    signer = MessageSigner(secret)
    instance = new_instance_id()

    announced: list[bool] = []

    def say(kind: Literal["observer", "goodbye"]) -> None:
        message = encode(BusMessage(kind=kind, origin=OBSERVER_ORIGIN, instance=instance, body={}))
        endpoint.command("PUBLISH", channel, signer.sign(channel.encode(), message))
        announced.append(True)

    heard: dict[str, HeardNode] = {}
    try:
        for data in endpoint.listen(channel, duration_s, on_subscribed=lambda: say("observer")):
            payload = signer.verify(channel.encode(), data)
            if payload is None:
                continue
            try:
                message = decode(payload, settings.bus_max_message_bytes)
            except BusError:
                continue
            if message.kind in ("hello", "heartbeat"):
                heard[message.instance] = HeardNode(
                    message.origin, message.instance, message.body.get("pid"), message.body.get("host")
                )
            elif message.kind == "goodbye":
                heard.pop(message.instance, None)
    finally:
        # After the listening connection is closed, so the nodes do not wait for it again; else they forget the
        # observer after the silence.
        if announced:
            with contextlib.suppress(RedisError):
                say("goodbye")
    return sorted(heard.values(), key=lambda node: (node.node, node.instance))


def collect_bus_view(state: ClusterState, timeout_s: float) -> dict[str, Any]:
    """{"seen_from", "others", "id_conflicts"} from the first of our nodes that answers, or {"error"}."""
    own = {node.id for node in state.nodes}
    for node in state.nodes:
        if node.status != "online" or node.port is None:
            continue
        try:
            with urllib.request.urlopen(local_url(state.host, node.port) + "/cluster", timeout=timeout_s) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):
            continue
        others = [
            {
                "host": _host_of(peer["node"]),
                "node": peer["node"],
                "instance": peer["instance"],
                "pid": peer.get("pid"),
                "sockets": peer.get("sockets"),
                "last_heartbeat_s": peer.get("last_seen_s"),
            }
            for peer in body.get("nodes", [])
            if not peer.get("self") and peer.get("node") not in own
        ]
        return {"seen_from": node.id, "others": others, "id_conflicts": body.get("id_conflicts", [])}
    return {"error": "no node of this host answered /cluster", "others": [], "id_conflicts": []}


def _host_of(node_id: str) -> str:
    host, slash, _ = node_id.partition("/")
    return host if slash else "-"


def render_bus_view(view: dict[str, Any] | None) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if view is None:
        return parts
    if view.get("error"):
        parts.append(Text(f"other hosts: unknown ({view['error']})", style="yellow"))
    if view["others"]:
        table = Table(title=Text(f"other hosts, as {view['seen_from']} hears them"), title_justify="left")
        for column in ("host", "node", "pid", "sockets", "last heartbeat"):
            table.add_column(column, justify="left" if column in ("host", "node") else "right")
        for peer in view["others"]:
            seen = peer["last_heartbeat_s"]
            table.add_row(
                peer["host"],
                peer["node"],
                "-" if peer["pid"] is None else str(peer["pid"]),
                "-" if peer["sockets"] is None else str(peer["sockets"]),
                "-" if seen is None else f"{seen:.1f} s ago",
            )
        parts.append(table)
    for conflict in view["id_conflicts"]:
        parts.append(
            Text(
                f"id conflict: {conflict['node']} is announced by instance {conflict['instance']} while "
                f"{conflict['holder']} holds it; give each supervisor its own --name",
                style="bold red",
            )
        )
    return parts
