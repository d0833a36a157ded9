"""`/users` and `/users/{id_user}`: read the users, rename one.

With `--auth token` a rename needs `Authorization: Bearer <token>` of that same
user (401 without one or with one that does not verify, 403 with another user's).
Reads stay open: they hold what the original's page shows anyone (the seeded
names), what every member of a room hears in its events anyway, and `who` and
the health checks read them without being a user.
"""

from __future__ import annotations

from aiohttp import web

from sioplay.db.store import UserStore
from sioplay.errors import TokenError, ValidationError
from sioplay.node.auth import TokenVerifier, bearer_token
from sioplay.node.routes.guards import WRITE_ROUTE
from sioplay.node.routes.responses import json_response, read_json_object

__all__ = ["user_routes"]


def _unauthorized(message: str, error: str | None = None) -> web.HTTPUnauthorized:
    challenge = 'Bearer realm="sioplay"' + (f', error="{error}"' if error else "")
    return web.HTTPUnauthorized(reason=message, headers={"WWW-Authenticate": challenge})


def authorize_write(verifier: TokenVerifier, request: web.Request, id_user: str) -> None:
    """Nothing if the request's bearer token is `id_user`'s; else the 401 or 403 that says why."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise _unauthorized("token required: send Authorization: Bearer <token>")
    try:
        claims = verifier.verify(token)
    except TokenError as exc:
        raise _unauthorized(str(exc), "invalid_token") from None
    if claims.id_user != id_user:
        raise web.HTTPForbidden(reason=f"the token is user {claims.id_user}'s: it cannot change user {id_user}")


def user_routes(store: UserStore, verifier: TokenVerifier | None = None) -> list[web.RouteDef]:
    async def list_users(request: web.Request) -> web.Response:
        return json_response([user.as_json() for user in await store.list()])

    async def get_user(request: web.Request) -> web.Response:
        return json_response((await store.get(request.match_info["id_user"])).as_json())

    async def put_user(request: web.Request) -> web.Response:
        if verifier is not None:
            authorize_write(verifier, request, request.match_info["id_user"])
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
