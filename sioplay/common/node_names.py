"""How a supervisor names its nodes: ``node-N``, or ``NAME/node-N`` once it has a name (``--name``).

The full id is what goes on the bus, into JSON and into rosters, so that two hosts on one Redis
never share an id; the short ``node-N`` is the local handle (log file names, ``--node`` options).
"""

from __future__ import annotations

__all__ = ["full_node_id", "matches_node", "short_node_id"]


def full_node_id(name: str | None, index: int) -> str:
    """The id of the `index`-th (1-based) node of the supervisor called `name`."""
    short = f"node-{index}"
    return short if name is None else f"{name}/{short}"


def short_node_id(node_id: str) -> str:
    return node_id.rpartition("/")[2]


def matches_node(node_id: str, wanted: str) -> bool:
    """Whether `wanted`, as an operator typed it (full or short), names `node_id`."""
    return wanted in (node_id, short_node_id(node_id))
