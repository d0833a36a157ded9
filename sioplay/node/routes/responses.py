"""JSON responses, and the middleware that makes every error one: `{"error", "status"}` with the right status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from sioplay.errors import DatabaseError, UnknownUserError, ValidationError

__all__ = ["error_response", "json_errors", "json_response", "read_json_object"]

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
