"""Every HTTP route of a node, one module per group:

- ``users``: ``/users``, ``/users/{id_user}`` (read, rename)
- ``roster``: ``/{room}/users``, ``/rooms/{room}``, ``/rooms`` (the cluster-wide answers)
- ``ops``: ``/healthz``, ``/metrics``, ``/cluster``
- ``ui``: ``/ui/{room}`` and ``/assets`` (the browser page)
- ``responses``: JSON bodies, and the middleware that makes every error JSON
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from sioplay.node.routes.ops import ops_routes
from sioplay.node.routes.responses import json_errors
from sioplay.node.routes.roster import roster_routes
from sioplay.node.routes.ui import ui_routes
from sioplay.node.routes.users import user_routes

if TYPE_CHECKING:
    from sioplay.node.app import Node

__all__ = ["add_routes", "json_errors"]


def add_routes(app: web.Application, node: Node) -> None:
    """The routes of `node`; `/{room}/users` last, as it matches any first path segment."""
    app.add_routes(user_routes(node.store))
    app.add_routes(ui_routes())
    app.add_routes(ops_routes(node))
    app.add_routes(roster_routes(node.roster, node.settings.roster_timeout_s))
