"""Every HTTP route of a node, one module per group:

- ``users``: ``/users``, ``/users/{id_user}`` (read, rename)
- ``roster``: ``/{room}/users``, ``/rooms/{room}``, ``/rooms`` (the cluster-wide answers)
- ``ops``: ``/healthz``, ``/metrics``, ``/cluster``
- ``ui``: ``/ui/{room}`` and ``/assets`` (the browser page)
- ``responses``: JSON bodies, and the middleware that makes every error JSON
- ``guards``: what every request passes first (access log of writes, Host check, UTF-8 path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from sioplay.node.routes.guards import HostNames, host_check, utf8_path, write_log
from sioplay.node.routes.ops import ops_routes
from sioplay.node.routes.responses import json_errors
from sioplay.node.routes.roster import roster_routes
from sioplay.node.routes.ui import ui_routes
from sioplay.node.routes.users import user_routes
from sioplay.settings import Settings

if TYPE_CHECKING:
    from sioplay.node.app import Node

__all__ = ["add_routes", "middlewares"]


def middlewares(settings: Settings) -> list[Middleware]:
    """Outermost first: the write log sees the status whatever answered, and every error below it is JSON."""
    return [write_log, json_errors, host_check(HostNames.for_node(settings.host, settings.allowed_hosts)), utf8_path]


async def no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer is read as the type it says it is (the static files too), never guessed at."""
    response.headers.setdefault(hdrs.X_CONTENT_TYPE_OPTIONS, "nosniff")


def add_routes(app: web.Application, node: Node) -> None:
    """The routes of `node`; `/{room}/users` last, as it matches any first path segment."""
    app.on_response_prepare.append(no_sniffing)
    app.add_routes(user_routes(node.store, node.verifier))
    app.add_routes(ui_routes())
    app.add_routes(ops_routes(node))
    app.add_routes(roster_routes(node.roster, node.settings.roster_timeout_s))
