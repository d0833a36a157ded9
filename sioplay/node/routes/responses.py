"""JSON responses, and the middleware that makes every error one: `{"error", "status"}` with the right status.

Errors aiohttp answers before any middleware (a request it cannot parse, a
handler that crashed) are made JSON by the ``json-parse-errors`` patch
(`sioplay.node.patches`), with :func:`error_body`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import hdrs, web

from sioplay.db.liveness import FileChangedError
from sioplay.errors import DatabaseError, UnknownUserError, ValidationError

__all__ = ["error_body", "error_response", "json_errors", "json_response", "read_json_object"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json", headers=headers)


# Longest message taken from a response some library made, e.g. engine.io's refusals.
MAX_FOREIGN_MESSAGE_CHARS = 200
# Headers of an aiohttp error that say more than its status, and stay on its JSON answer.
KEPT_ERROR_HEADERS = (hdrs.ALLOW, hdrs.RETRY_AFTER, hdrs.WWW_AUTHENTICATE)


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message, "status": status})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=error_body(status, message), status=status, content_type="application/json", headers=headers
    )


def _http_error(exc: web.HTTPException, request: web.Request) -> web.Response:
    headers = {name: exc.headers[name] for name in KEPT_ERROR_HEADERS if name in exc.headers}
    message = exc.reason
    if exc.status == 405 and hdrs.ALLOW in headers:
        message = f"method {request.method} is not allowed here (allowed: {headers[hdrs.ALLOW]})"
    return error_response(exc.status, message, headers)


def _as_json_error(response: web.StreamResponse) -> web.StreamResponse:
    """An error answer some library made (engine.io's are text) as the JSON one; any other answer as it is."""
    if response.status < 400 or response.prepared or not isinstance(response, web.Response):
        return response
    if response.content_type == "application/json":
        return response
    body = response.body if isinstance(response.body, bytes) else b""
    try:
        # engine.io sends its refusals as a JSON string under text/plain.
        said = orjson.loads(body)
    except orjson.JSONDecodeError:
        said = None
    text = said.strip() if isinstance(said, str) else body.decode("utf-8", "replace").strip()
    return error_response(response.status, text[:MAX_FOREIGN_MESSAGE_CHARS] or response.reason)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a clear message and the right status."""
    try:
        return _as_json_error(await handler(request))
    except ValidationError as exc:
        return error_response(400, str(exc))
    except UnknownUserError as exc:
        return error_response(404, str(exc))
    except FileChangedError as exc:
        # Says which file and what happened to it, never where it is.
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(503, f"user database unavailable: {exc}")
    except DatabaseError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(503, "user database unavailable")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc, request)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationError("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValidationError("request body must be a JSON object")
    return value
