"""`/users` and `/users/{id_user}`: read the users, rename one."""

from __future__ import annotations

from aiohttp import web

from sioplay.db.store import UserStore
from sioplay.errors import ValidationError
from sioplay.node.routes.guards import WRITE_ROUTE
from sioplay.node.routes.responses import json_response, read_json_object

__all__ = ["user_routes"]


def user_routes(store: UserStore) -> list[web.RouteDef]:
    async def list_users(request: web.Request) -> web.Response:
        return json_response([user.as_json() for user in await store.list()])

    async def get_user(request: web.Request) -> web.Response:
        return json_response((await store.get(request.match_info["id_user"])).as_json())

    async def put_user(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise ValidationError(f"unknown fields: {', '.join(unknown)} (only 'name' can be changed)")
        if "name" not in body:
            raise ValidationError("missing field 'name'")
        # The store validates the name: one check, where every write passes.
        await store.rename(request.match_info["id_user"], body["name"])
        return web.Response(status=204)

    return [
        web.get("/users", list_users),
        web.get("/users/{id_user}", get_user),
        web.put("/users/{id_user}", put_user, name=WRITE_ROUTE),
    ]
