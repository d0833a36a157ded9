"""Which page origins may open a websocket: the node's own, with the scheme it is really served on.

engine.io accepts the origin ``{scheme}://{Host}``, but its aiohttp driver
takes the scheme from ``X-Forwarded-Proto`` or else says ``http``, also on a
TLS connection: a page on ``https://localhost:5009`` would be refused. This is
engine.io's own rule, passed as its public ``cors_allowed_origins`` callable,
with aiohttp's `request.scheme` (``https`` when the connection is TLS).
"""

from __future__ import annotations

from typing import Any

__all__ = ["same_origin"]


def same_origin(origin: str | None, environ: dict[str, Any]) -> bool:
    host = environ.get("HTTP_HOST")
    if origin is None or host is None:
        return False
    request = environ.get("aiohttp.request")
    scheme = request.scheme if request is not None else "http"
    allowed = {f"{scheme}://{host}"}
    # As engine.io does behind a proxy that says what the browser used.
    forwarded_proto, forwarded_host = environ.get("HTTP_X_FORWARDED_PROTO"), environ.get("HTTP_X_FORWARDED_HOST")
    if forwarded_proto is not None or forwarded_host is not None:
        proto = (forwarded_proto or scheme).split(",")[0].strip()
        allowed.add(f"{proto}://{(forwarded_host or host).split(',')[0].strip()}")
    return origin in allowed
