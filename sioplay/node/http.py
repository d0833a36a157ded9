"""The HTTP routes of a node: users, the room roster, health and the browser page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from sioplay.db.models import validate_name
from sioplay.db.store import UserStore
from sioplay.errors import DatabaseError, UnknownUserError, ValidationError
from sioplay.node.roster import RosterService
from sioplay.node.validation import validate_room

__all__ = ["json_errors", "json_response", "read_json_object", "roster_routes", "user_routes"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message, "status": status}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a clear message and the right status."""
    try:
        return await handler(request)
    except ValidationError as exc:
        return error_response(400, str(exc))
    except UnknownUserError as exc:
        return error_response(404, str(exc))
    except DatabaseError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(503, "user database unavailable")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationError("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValidationError("request body must be a JSON object")
    return value


def room_from(request: web.Request) -> str:
    return validate_room(request.match_info["room"])


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
        await store.rename(request.match_info["id_user"], validate_name(body["name"]))
        return web.Response(status=204)

    return [
        web.get("/users", list_users),
        web.get("/users/{id_user}", get_user),
        web.put("/users/{id_user}", put_user),
    ]


def timeout_from(request: web.Request, default_s: float) -> float:
    raw = request.query.get("timeout_ms")
    if raw is None:
        return default_s
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"timeout_ms must be an integer, not {raw[:20]!r}") from None
    if not 1 <= value <= 60_000:
        raise ValidationError(f"timeout_ms must be between 1 and 60000, not {value}")
    return value / 1000


def flag_from(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("", "1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValidationError(f"{name} must be 1 or 0, not {raw[:20]!r}")


def roster_routes(roster: RosterService, default_timeout_s: float) -> list[web.RouteDef]:
    async def room_users(request: web.Request) -> web.Response:
        result = await roster.roster(room_from(request), timeout_from(request, default_timeout_s))
        return web.Response(
            body=result.legacy_json, content_type="application/json", headers=result.completeness.headers()
        )

    async def room(request: web.Request) -> web.Response:
        group = request.query.get("group")
        if group not in (None, "user", "socket"):
            raise ValidationError(f"group must be 'user' or 'socket', not {group[:20]!r}")
        strict = flag_from(request, "strict")
        result = await roster.roster(room_from(request), timeout_from(request, default_timeout_s))
        body = result.envelope(group_by_user=group == "user")
        if strict and not result.completeness.complete:
            missing = ", ".join(result.completeness.missing) or "none"
            body = {"error": f"roster incomplete (missing: {missing})", "status": 503, **body}
            return json_response(body, status=503, headers=result.completeness.headers())
        return json_response(body, headers=result.completeness.headers())

    async def rooms(request: web.Request) -> web.Response:
        result = await roster.rooms(timeout_from(request, default_timeout_s))
        return json_response(result.envelope(), headers=result.completeness.headers())

    return [
        web.get("/rooms", rooms),
        web.get("/rooms/{room}", room),
        web.get("/{room}/users", room_users),
    ]
