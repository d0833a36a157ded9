"""The node-to-node message format: JSON, validated and size-checked on receipt.

Nothing that arrives over pub/sub is trusted: a message is decoded as JSON
only (never pickle), checked against its kind's shape and bounded in size,
or refused with a BusError that says why (the listener counts and drops it).

    {"v": 2, "kind": "roster-request", "origin": "node-2", "instance": "3f…",
     "request_id": "9a…", "body": {"room": "Maths", "have": {"7c…": 41}}}

Presence (hello, heartbeat, goodbye, observer) is checked here; the request and reply
bodies of the roster protocol, and part deltas, in `roster_protocol`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Literal, get_args

import orjson

from sioplay.errors import BusError, ConfigError
from sioplay.node.roster_protocol import BODY_CHECKS, INSTANCE, REPLY_KIND, matching

__all__ = [
    "HOSTNAME_MAX",
    "MAX_REFUSING",
    "NODE_ID",
    "PROTOCOL_VERSION",
    "BusMessage",
    "Kind",
    "decode",
    "encode",
    "validate_node_id",
]

# 2: roster replies carry their part's version and may say it is unchanged.
PROTOCOL_VERSION = 2
# What a node id, an instance and a request id may be: they reach log lines, headers and rosters.
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,62})?")
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
# A presence message lists at most this many refused instances (as `id_conflicts` remembers).
MAX_REFUSING = 64
# A presence message's machine name (hostname), as named in a refusal to start.
HOSTNAME_MAX = 253
HOSTNAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{HOSTNAME_MAX - 1}}}")

# "observer": a process that listens to the bus and never answers (the start-up check of another supervisor).
Kind = Literal[
    "hello",
    "heartbeat",
    "goodbye",
    "observer",
    "roster-request",
    "roster-reply",
    "rooms-request",
    "rooms-reply",
    "part-request",
    "part-reply",
    "part-delta",
]
KINDS: frozenset[str] = frozenset(get_args(Kind))
REQUEST_KINDS = frozenset(REPLY_KIND)
REPLY_KINDS = frozenset(REPLY_KIND.values())


@dataclasses.dataclass(frozen=True, slots=True)
class BusMessage:
    kind: Kind
    origin: str
    instance: str
    body: dict[str, Any]
    request_id: str | None = None


def encode(message: BusMessage) -> bytes:
    return orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "kind": message.kind,
            "origin": message.origin,
            "instance": message.instance,
            "request_id": message.request_id,
            "body": message.body,
        }
    )


def decode(raw: bytes | str, max_bytes: int) -> BusMessage:
    """The message in `raw`, or BusError naming what is wrong with it."""
    if len(raw) > max_bytes:
        raise BusError(f"oversized message ({len(raw)} bytes, limit {max_bytes})")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BusError("message is not JSON") from None
    if not isinstance(data, dict):
        raise BusError("message is not a JSON object")
    if data.get("v") != PROTOCOL_VERSION:
        raise BusError(f"unsupported protocol version {data.get('v')!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise BusError(f"unknown kind {str(kind)[:40]!r}")
    origin = matching(data.get("origin"), "origin", NODE_ID)
    instance = matching(data.get("instance"), "instance", INSTANCE)
    request_id = data.get("request_id")
    if kind in REQUEST_KINDS or kind in REPLY_KINDS:
        request_id = matching(request_id, "request_id", REQUEST_ID)
    elif request_id is not None:
        raise BusError(f"{kind} carries a request_id")
    body = data.get("body")
    if not isinstance(body, dict):
        raise BusError("body is not an object")
    _BODY_CHECKS[kind](body)
    return BusMessage(kind=kind, origin=origin, instance=instance, body=body, request_id=request_id)


def validate_node_id(node_id: str) -> str:
    """`node_id` if other nodes will accept it on the bus; ConfigError otherwise."""
    if NODE_ID.fullmatch(node_id) is None:
        raise ConfigError(
            f"node id {node_id[:70]!r} is not valid: 1-63 letters, digits, '.', '_' or '-', "
            "optionally as host/node, starting with a letter or digit"
        )
    return node_id


def _check_presence(body: dict[str, Any]) -> None:
    sockets = body.get("sockets", 0)
    if not isinstance(sockets, int) or isinstance(sockets, bool) or sockets < 0:
        raise BusError("sockets must be a non-negative integer")
    pid = body.get("pid", 1)
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**32:
        raise BusError("pid must be a positive integer")
    refusing = body.get("refusing", [])
    if not isinstance(refusing, list) or len(refusing) > MAX_REFUSING:
        raise BusError(f"refusing must be a list of at most {MAX_REFUSING} instances")
    for instance in refusing:
        matching(instance, "refusing", INSTANCE)
    host = body.get("host")
    if host is not None and (not isinstance(host, str) or HOSTNAME.fullmatch(host) is None):
        raise BusError("host must be a host name")
    # The version of the sender's part, from a node that publishes its part deltas (the `replica` roster mode).
    seq = body.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BusError("seq must be a non-negative integer")


def _nothing(body: dict[str, Any]) -> None:
    return None


_BODY_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "hello": _check_presence,
    "heartbeat": _check_presence,
    "goodbye": _nothing,
    "observer": _nothing,
    **BODY_CHECKS,
}
